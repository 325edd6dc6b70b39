package admission

// Attacks on the workload principals (unit:, user-unit:, cgroup:): a user
// with a delegated cgroup subtree making cgroups named like system units,
// callers in their own cgroup namespaces, callers moved between cgroups
// while they connect, and policies that combine the workload principals
// with exe:.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/peercred"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"
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

func init() {
	// forge-cgroup DIR REL ENDPOINT METHOD: makes the cgroups REL (a
	// slash-separated path, each component made with mkdirat so that the
	// whole may exceed PATH_MAX) below the cgroup directory DIR, as the
	// user it runs as, moves itself into the last, and execs the call
	// helper with ENDPOINT METHOD.
	testutil.RegisterHelper("forge-cgroup", func(args []string) error {
		dir, err := unix.Open(args[0], unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		for _, c := range strings.Split(args[1], "/") {
			if err := unix.Mkdirat(dir, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("mkdir %q: %w", c, err)
			}
			next, err := unix.Openat(dir, c, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			unix.Close(dir)
			dir = next
		}
		procs, err := unix.Openat(dir, "cgroup.procs", unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if _, err := unix.Write(procs, []byte(strconv.Itoa(os.Getpid()))); err != nil {
			return fmt.Errorf("moving into %s: %w", args[1], err)
		}
		unix.Close(procs)
		env := []string{testutil.HelperEnv + "=call"}
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, testutil.HelperEnv+"=") {
				env = append(env, e)
			}
		}
		return unix.Exec("/proc/self/exe", []string{os.Args[0], "-test.run=^$", args[2], args[3]}, env)
	})
}

// delegate makes the cgroup p (as systemd makes user@UID.service) and
// gives it to uid as systemd's delegation does: the directory and the
// files that let its owner make and fill cgroups below it. The cgroups
// its owner makes below are removed when the test ends.
func delegate(t *testing.T, p string, uid int) string {
	t.Helper()
	dir := makeCgroup(t, p)
	for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
		if err := os.Chown(filepath.Join(dir, f), uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { removeBelow(dir) })
	return dir
}

// removeBelow removes the cgroups below dir, deepest first, relative to
// open directories: a path deeper than PATH_MAX cannot be removed by name.
func removeBelow(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	removeBelowFD(fd)
	unix.Close(fd)
}

// removeBelowFD removes the cgroups below the directory fd, deepest first.
func removeBelowFD(fd int) {
	dup, err := unix.Dup(fd) // the os.File closes its own
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(dup), "cgroup")
	ents, _ := d.ReadDir(-1)
	d.Close()
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sub, err := unix.Openat(fd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			removeBelowFD(sub)
			unix.Close(sub)
		}
		for range 100 {
			if err := unix.Unlinkat(fd, e.Name(), unix.AT_REMOVEDIR); err == nil || !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestDelegatedSubtreeCannotForgeUnits: uid 2002, owning its manager's
// cgroup (/user.slice/user-2002.slice/user@2002.service) as systemd's
// delegation gives it, makes cgroups below it named to look like system
// units, other users' managers, escaped names, slices, long and deep
// names, and calls from each, also from its own cgroup namespace rooted
// at its manager (where it sees itself as /system.slice/backup.service).
// The server sees every one inside user@2002.service: unit:backup.service,
// unit:user@0.service and unit:user@2003.service admit none, user-unit:
// is only ever the component below the manager's slices, for uid 2002.
func TestDelegatedSubtreeCannotForgeUnits(t *testing.T) {
	const mgr = "/user.slice/user-2002.slice/user@2002.service"
	dir := delegate(t, mgr, 2002)
	p := e2e.MustPolicy(t, `{"name": "forge",
		"allow_rules": [{"name": "system-units", "source": {"principals": ["unit:backup.service", "unit:user@0.service", "unit:user@2003.service", "user-unit:victim.service"]}},
		                {"name": "anyone-whoami", "source": {"principals": ["cgroup:/"]}, "request": {"paths": ["/grpcipc.v1.Identity/*"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(p))
	long := strings.Repeat("a", 247) + ".service" // 255 bytes, the longest name
	deep := strings.TrimSuffix(strings.Repeat(strings.Repeat("d", 250)+".slice/", 17), "/") + "/backup.service"
	for _, tc := range []struct {
		rel, userUnit string
	}{
		{"system.slice/backup.service", "backup.service"},
		{"backup.service", "backup.service"},
		{"_backup.service", "backup.service"},
		{"__backup.service", "_backup.service"},
		{"_system.slice/backup.service", "backup.service"},
		{"user@0.service", "user@0.service"},
		{"user@0.service/backup.service", "user@0.service"},
		{"_user@0.service/backup.service", "user@0.service"},
		{"user-2003.slice/user@2003.service/victim.service", "user@2003.service"},
		{"x.slice/user@2003.service/app.slice/victim.service", "user@2003.service"},
		{"system.slice", ""},
		{"system.slice/backup.service ", ""},
		{"system.slice/backup.service\x01", ""},
		{"system.slice/bäckup.service", ""},
		{"..slice/backup.service", "backup.service"},
		{"...service", "...service"},
		{"app.slice/" + long, long},
		{deep, "?"}, // deeper than /proc/PID/cgroup's first 4096 bytes: unknown, or the truth
	} {
		for _, ns := range []bool{false, true} {
			name := fmt.Sprintf("%.60q ns=%v", tc.rel, ns)
			run := func(method string) e2e.CallResult {
				cmd := testutil.HelperCommand(t, 2002, 2002, "forge-cgroup", dir, tc.rel, endpoint, method)
				f, err := os.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
				if ns {
					cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWCGROUP
				}
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s: forge-cgroup: %v (%s)", name, err, out)
				}
				var res e2e.CallResult
				if err := json.Unmarshal(out, &res); err != nil {
					t.Fatalf("%s: %q: %v", name, out, err)
				}
				return res
			}
			if res := run("SayHello"); res.Code != "PermissionDenied" {
				t.Errorf("%s: SayHello %s %s, want PermissionDenied", name, res.Code, res.Message)
			}
			who := run("WhoAmI")
			if tc.userUnit == "?" {
				if who.Code == "OK" && (who.Who.Cgroup != mgr+"/"+tc.rel || who.Who.UserUnit != "backup.service") {
					t.Errorf("%s: WhoAmI says cgroup %q, user unit %q", name, who.Who.Cgroup, who.Who.UserUnit)
				}
				t.Logf("%s: WhoAmI %s (cgroup of %d bytes)", name, who.Code, len(who.Who.Cgroup))
				continue
			}
			if who.Code != "OK" {
				t.Errorf("%s: WhoAmI %s %s", name, who.Code, who.Message)
				continue
			}
			if who.Who.Cgroup != mgr+"/"+tc.rel || who.Who.Unit != "user@2002.service" || who.Who.UserUnit != tc.userUnit {
				t.Errorf("%s: WhoAmI says cgroup %q unit %q user unit %q; want %q, user@2002.service, %q",
					name, who.Who.Cgroup, who.Who.Unit, who.Who.UserUnit, mgr+"/"+tc.rel, tc.userUnit)
			}
		}
	}
}

func init() {
	// whoami-loop ENDPOINT SECONDS: calls WhoAmI on a new connection each
	// time, for SECONDS, printing each call's code and the cgroup the
	// server saw.
	testutil.RegisterHelper("whoami-loop", func(args []string) error {
		secs, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		for end := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(end); {
			conn, err := grpcipc.NewClient(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			who, err := identitypb.NewIdentityClient(conn).WhoAmI(ctx, &identitypb.WhoAmIRequest{})
			cancel()
			conn.Close()
			fmt.Printf("%s %s\n", status.Code(err), who.GetCgroup())
		}
		return nil
	})
}

// TestUnitWhileMoved: root moves a caller round three cgroups, as fast as
// it can, while the caller connects again and again. The server admits
// it only with the cgroup of the admitted unit (the one it was in at some
// point of the accept), and keeps serving.
func TestUnitWhileMoved(t *testing.T) {
	unit := makeCgroup(t, "/system.slice/demo.service")
	others := []string{makeCgroup(t, "/system.slice/other.service"), makeCgroup(t, "/system.slice/third.service")}
	p := e2e.MustPolicy(t, `{"name": "unit", "allow_rules": [{"name": "the-unit", "source": {"principals": ["unit:demo.service"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(p))
	root, _ := peercred.CgroupRoot()

	for _, round := range []struct {
		name  string
		cycle []string
		admit bool
	}{
		{"round the unit and two others", []string{unit, others[0], others[1]}, true},
		{"round two others only", others, false},
	} {
		cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "whoami-loop", endpoint, "3")
		f, err := os.Open(round.cycle[0])
		if err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
		out := testutil.Start(t, cmd)
		f.Close()
		stop := make(chan struct{})
		moved := make(chan int)
		go func() {
			n := 0
			defer func() { moved <- n }()
			pid := []byte(strconv.Itoa(cmd.Process.Pid))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if os.WriteFile(filepath.Join(round.cycle[i%len(round.cycle)], "cgroup.procs"), pid, 0) == nil {
					n++
				}
				if i%64 == 0 {
					time.Sleep(time.Millisecond) // keep the load moderate
				}
			}
		}()
		counts := map[string]int{}
		for {
			line, err := out.ReadString('\n')
			if err != nil {
				break
			}
			code, cg, _ := strings.Cut(strings.TrimSpace(line), " ")
			counts[code]++
			if code == "OK" && (!round.admit || cg != strings.TrimPrefix(unit, root)) {
				t.Errorf("%s: admitted with cgroup %q", round.name, cg)
			}
			if code != "OK" && code != "PermissionDenied" {
				t.Errorf("%s: %s", round.name, line)
			}
		}
		close(stop)
		n := <-moved
		cmd.Wait()
		t.Logf("%s: %d moves, calls %v", round.name, n, counts)
		if counts["OK"]+counts["PermissionDenied"] < 10 {
			t.Errorf("%s: too few calls: %v", round.name, counts)
		}
	}
	// Still serving.
	if res := e2e.Call(t, e2e.Caller{UID: testutil.Nobody, GID: testutil.Nobody, Cgroup: unit}, endpoint, "WhoAmI"); res.Code != "OK" {
		t.Errorf("after the moves: %s %s", res.Code, res.Message)
	}
}

func init() {
	// unit-server ENDPOINT: serves SayHello to anyone on ENDPOINT, says
	// "ready", and stops when its stdin closes.
	testutil.RegisterHelper("unit-server", func(args []string) error {
		p, err := grpcipc.AllowPolicy(grpcipc.Anyone())
		if err != nil {
			return err
		}
		l, err := grpcipc.Listen(context.Background(), args[0], grpcipc.WithPolicy(p))
		if err != nil {
			return err
		}
		s, err := grpcipc.NewServer(grpcipc.WithPolicy(p))
		if err != nil {
			l.Close()
			return err
		}
		greetpb.RegisterGreeterServer(s, e2e.Greeter{})
		go func() { io.Copy(io.Discard, os.Stdin); s.Stop() }()
		fmt.Println("ready")
		return s.Serve(l)
	})
}

// TestExpectedServerUnit: a client that expects the server in a unit
// (WithExpectedServer(unit:...)) reads the server's cgroup: it talks to a
// server root started in that unit, and refuses one root started in
// another unit, with the same uid and executable.
func TestExpectedServerUnit(t *testing.T) {
	unit := makeCgroup(t, "/system.slice/demo.service")
	other := makeCgroup(t, "/system.slice/other.service")
	for _, tc := range []struct {
		name, cgroup string
		ok           bool
		path         bool
	}{{"in the unit", unit, true, false}, {"in another unit", other, false, false},
		{"in the unit, on a socket file", unit, true, true}, {"in another unit, on a socket file", other, false, true}} {
		endpoint := "unix-abstract:" + testutil.AbstractName(t)
		if tc.path {
			endpoint = "unix:" + filepath.Join(testutil.ShortTempDir(t), "s.sock")
		}
		cmd := testutil.HelperCommand(t, 0, 0, "unit-server", endpoint)
		f, err := os.Open(tc.cgroup)
		if err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := testutil.Start(t, cmd)
		f.Close()
		if line, err := out.ReadString('\n'); line != "ready\n" {
			t.Fatalf("server said %q, %v", line, err)
		}
		err = e2e.SayHello(t, endpoint, grpcipc.WithExpectedServer(e2e.MustPrincipal(t, "unit:demo.service")))
		var sie *grpcipc.ServerIdentityError
		switch {
		case tc.ok && err != nil:
			t.Errorf("server %s: %v", tc.name, err)
		case !tc.ok && (err == nil || !errors.As(err, &sie) && !strings.Contains(err.Error(), "other.service")):
			t.Errorf("server %s: %v, want a ServerIdentityError naming its cgroup", tc.name, err)
		}
		t.Logf("server %s: %v", tc.name, err)
		stdin.Close()
		cmd.Wait()
	}
}

// TestDefaultPolicyReadsNoCgroup: a server with the default policy does
// not read its callers' cgroups (WhoAmI says none), one whose policy
// names a unit does.
func TestDefaultPolicyReadsNoCgroup(t *testing.T) {
	unit := makeCgroup(t, "/system.slice/demo.service")
	root, _ := peercred.CgroupRoot()
	for _, tc := range []struct {
		name string
		opts []grpcipc.ServerOption
		want string
	}{
		{"default policy", nil, ""},
		{"a policy naming a unit", []grpcipc.ServerOption{grpcipc.WithPolicy(e2e.MustPolicy(t, `{"name": "u", "allow_rules": [{"name": "u", "source": {"principals": ["same-user", "unit:demo.service"]}}]}`))}, strings.TrimPrefix(unit, root)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			e2e.ServeGuarded(t, endpoint, tc.opts...)
			res := e2e.Call(t, e2e.Caller{UID: 0, GID: 0, Cgroup: unit}, endpoint, "WhoAmI")
			if res.Code != "OK" || res.Who.Cgroup != tc.want {
				t.Errorf("WhoAmI %s, cgroup %q; want OK, %q", res.Code, res.Who.Cgroup, tc.want)
			}
		})
	}
}
