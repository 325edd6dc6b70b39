package admission

// Attacks on the workload principals (unit:, user-unit:, cgroup:): a user
// with a delegated cgroup subtree making cgroups named like system units,
// callers in their own cgroup namespaces, callers moved between cgroups
// while they connect, and policies that combine the workload principals
// with exe:.

import (
	"fmt"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// TestUnitWithExe: the executable is read when a caller could be
// admitted were its executable the named one. That must hold when the
// policy also names a unit: the cgroup is read too, so neither an allow
// rule that needs both (all_of uid, exe, unit) nor a deny rule naming
// another unit may keep the executable from being read (which would
// refuse every caller the exe: rule names).
func TestUnitWithExe(t *testing.T) {
	testutil.RequireRoot(t)
	unit := makeCgroup(t, "/system.slice/demo.service")
	bad := makeCgroup(t, "/system.slice/bad.service")
	exeA := testutil.CopyExecutable(t)
	exeB := testutil.CopyExecutable(t)
	for _, tc := range []struct {
		name, policy string
		admitted     []e2e.Caller
		refused      []e2e.Caller
	}{
		{"all_of(uid, exe, unit)",
			fmt.Sprintf(`{"name": "p", "allow_rules": [{"name": "a", "source": {"principals": [{"all_of": ["uid:65534", "exe:%s", "unit:demo.service"]}]}}]}`, exeA),
			[]e2e.Caller{{UID: 65534, GID: 65534, Exe: exeA, Cgroup: unit}},
			[]e2e.Caller{{UID: 65534, GID: 65534, Exe: exeB, Cgroup: unit}, {UID: 65534, GID: 65534, Exe: exeA, Cgroup: bad}, {UID: 65534, GID: 65534, Exe: exeA}}},
		{"deny unit, allow all_of(uid, exe)",
			fmt.Sprintf(`{"name": "p", "deny_rules": [{"name": "d", "source": {"principals": ["unit:bad.service"]}}],
			 "allow_rules": [{"name": "a", "source": {"principals": [{"all_of": ["uid:65534", "exe:%s"]}]}}]}`, exeA),
			[]e2e.Caller{{UID: 65534, GID: 65534, Exe: exeA, Cgroup: unit}},
			[]e2e.Caller{{UID: 65534, GID: 65534, Exe: exeA, Cgroup: bad}, {UID: 65534, GID: 65534, Exe: exeB, Cgroup: unit}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			gs := e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(e2e.MustPolicy(t, tc.policy)))
			for _, c := range tc.admitted {
				if res := e2e.Call(t, c, endpoint, "SayHello"); res.Code != "OK" {
					t.Errorf("should admit %v in %s: got %s %s\n%s", c, c.Cgroup, res.Code, res.Message, gs.Log.String())
				}
			}
			for _, c := range tc.refused {
				if res := e2e.Call(t, c, endpoint, "SayHello"); res.Code != "PermissionDenied" {
					t.Errorf("should refuse %v in %q: got %s %s", c, c.Cgroup, res.Code, res.Message)
				}
			}
		})
	}
}
