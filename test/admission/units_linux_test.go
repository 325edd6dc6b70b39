package admission

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/peercred"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"
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
			// Its last process may take a moment to leave, and a slice it
			// made may hold another test's cgroup for a while (test
			// packages run at once): removed once empty, within 3 s.
			for range 300 {
				err := os.Remove(made[i])
				if err == nil || !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
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

func init() {
	// whoami-steps ENDPOINT: at each line on its stdin, calls WhoAmI on
	// one grpcipc.ClientConn (connecting at the first call) and prints the
	// call's code and the cgroup the server saw, until stdin closes.
	testutil.RegisterHelper("whoami-steps", func(args []string) error {
		conn, err := grpcipc.NewClient(args[0])
		if err != nil {
			return err
		}
		defer conn.Close()
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			who, err := identitypb.NewIdentityClient(conn).WhoAmI(ctx, &identitypb.WhoAmIRequest{})
			cancel()
			fmt.Printf("%s %s\n", status.Code(err), who.GetCgroup())
		}
		return nil
	})
}

// stepper is a whoami-steps helper: step makes it call, and returns the
// code and the cgroup the server saw.
type stepper struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startStepper(t *testing.T, endpoint, cgroup string) *stepper {
	t.Helper()
	cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "whoami-steps", endpoint)
	f, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := testutil.Start(t, cmd)
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return &stepper{t, cmd, in, out}
}

func (s *stepper) step() (code, cgroup string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, "go\n"); err != nil {
		s.t.Fatal(err)
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		s.t.Fatal(err)
	}
	code, cgroup, _ = strings.Cut(strings.TrimSpace(line), " ")
	return code, cgroup
}

// moveTo moves the process pid into the cgroup whose directory is dir.
func moveTo(t *testing.T, pid int, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatal(err)
	}
}

// TestUnitReadAtAccept: the cgroup is read once, when the connection is
// accepted. A caller that connected from the admitted unit and then moved
// out keeps what it had on that connection; one that moved in just before
// it connected is admitted; one that moved out just before it connected
// is refused.
func TestUnitReadAtAccept(t *testing.T) {
	unit := makeCgroup(t, "/system.slice/demo.service")
	other := makeCgroup(t, "/system.slice/other.service")
	p := e2e.MustPolicy(t, `{"name": "unit", "allow_rules": [{"name": "the-unit", "source": {"principals": ["unit:demo.service"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(p))
	root, _ := peercred.CgroupRoot()

	moved := startStepper(t, endpoint, unit)
	if code, cg := moved.step(); code != "OK" || cg != strings.TrimPrefix(unit, root) {
		t.Fatalf("from the unit: %s, cgroup %q", code, cg)
	}
	moveTo(t, moved.cmd.Process.Pid, other)
	if code, cg := moved.step(); code != "OK" || cg != strings.TrimPrefix(unit, root) {
		t.Errorf("moved out after connecting: %s, cgroup %q; want OK and the unit it connected from", code, cg)
	}

	in := startStepper(t, endpoint, other)
	moveTo(t, in.cmd.Process.Pid, unit)
	if code, cg := in.step(); code != "OK" || cg != strings.TrimPrefix(unit, root) {
		t.Errorf("moved in just before connecting: %s, cgroup %q", code, cg)
	}

	out := startStepper(t, endpoint, unit)
	moveTo(t, out.cmd.Process.Pid, other)
	if code, _ := out.step(); code != "PermissionDenied" {
		t.Errorf("moved out just before connecting: %s, want PermissionDenied", code)
	}
}
