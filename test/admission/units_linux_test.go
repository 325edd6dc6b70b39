package admission

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/peercred"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"golang.org/x/sys/unix"
)

// makeCgroup makes the cgroup at path p of the v2 hierarchy (root only)
// with the directories above it that are missing, and removes what it
// made when the test ends. It returns the cgroup's directory.
func makeCgroup(t *testing.T, p string) string {
	t.Helper()
	testutil.RequireRoot(t)
	root, err := peercred.CgroupRoot()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	var made []string
	dir := root
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		dir = filepath.Join(dir, c)
		if err := os.Mkdir(dir, 0o755); err == nil {
			made = append(made, dir)
		} else if !errors.Is(err, os.ErrExist) {
			t.Skipf("cannot make the cgroup %s (%v): the v2 hierarchy is not writable here", p, err)
		}
	}
	t.Cleanup(func() {
		for i := len(made) - 1; i >= 0; i-- {
			for range 100 { // its last process may take a moment to leave
				if err := os.Remove(made[i]); err == nil || !errors.Is(err, unix.EBUSY) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
	return dir
}

// TestUnitPrincipals: a policy that admits the system unit demo.service
// to every method, and its user's own demo.service (user-unit:) to WhoAmI
// only: a caller that root placed in /system.slice/demo.service is
// served; one in the same-named unit of a user's manager
// (/user.slice/user-2002.slice/user@2002.service/app.slice/demo.service)
// is not the system unit, whatever it is called, and gets WhoAmI only; one
// in neither gets nothing.
func TestUnitPrincipals(t *testing.T) {
	system := makeCgroup(t, "/system.slice/demo.service")
	user := makeCgroup(t, "/user.slice/user-2002.slice/user@2002.service/app.slice/demo.service")
	elsewhere := makeCgroup(t, "/system.slice/other.service")
	p := e2e.MustPolicy(t, `{"name": "units",
		"allow_rules": [{"name": "the-unit", "source": {"principals": ["unit:demo.service"]}},
		                {"name": "users-own", "source": {"principals": ["user-unit:demo.service"]}, "request": {"paths": ["/grpcipc.v1.Identity/*"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	gs := e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(p))

	for _, tc := range []struct {
		name          string
		caller        e2e.Caller
		hello, whoami string
	}{
		{"uid 65534 in the system unit", e2e.Caller{UID: testutil.Nobody, GID: testutil.Nobody, Cgroup: system}, "OK", "OK"},
		{"uid 2002 in its manager's demo.service", e2e.Caller{UID: 2002, GID: 2002, Cgroup: user}, "PermissionDenied", "OK"},
		{"uid 3003 in uid 2002's manager's demo.service", e2e.Caller{UID: 3003, GID: 3003, Cgroup: user}, "PermissionDenied", "PermissionDenied"},
		{"uid 65534 in another unit", e2e.Caller{UID: testutil.Nobody, GID: testutil.Nobody, Cgroup: elsewhere}, "PermissionDenied", "PermissionDenied"},
		{"root in its own cgroup", e2e.Caller{UID: 0, GID: 0}, "PermissionDenied", "PermissionDenied"},
	} {
		hello := e2e.Call(t, tc.caller, endpoint, "SayHello")
		who := e2e.Call(t, tc.caller, endpoint, "WhoAmI")
		if hello.Code != tc.hello || who.Code != tc.whoami {
			t.Errorf("%s: SayHello %s (%s), WhoAmI %s (%s); want %s and %s", tc.name, hello.Code, hello.Message, who.Code, who.Message, tc.hello, tc.whoami)
		}
		if who.Code == "OK" {
			// WhoAmI says where the server saw the caller run.
			root, _ := peercred.CgroupRoot()
			if want := strings.TrimPrefix(tc.caller.Cgroup, root); who.Who.Cgroup != want {
				t.Errorf("%s: WhoAmI says cgroup %q, want %q", tc.name, who.Who.Cgroup, want)
			}
			t.Logf("%s: WhoAmI: unit %q, user unit %q", tc.name, who.Who.Unit, who.Who.UserUnit)
		}
	}
	// The refusals say where each caller ran.
	if log := gs.Log.String(); !strings.Contains(log, "cgroup /system.slice/other.service") || !strings.Contains(log, "cgroup /user.slice/user-2002.slice/user@2002.service/app.slice/demo.service") {
		t.Errorf("the refusals logged do not name the callers' cgroups:\n%s", log)
	}
}
