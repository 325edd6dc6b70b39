package admission

// Attacks on the policy model from another local user's side (issue 11):
// a connection handed to another process while the one that connected
// exits or execs, a mount namespace that makes one's own program look like
// the allowed one. Each runs real processes as other users.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const (
	inheritedFDEnv = "GRPCIPC_TEST_FD"         // the descriptor number a callfd helper calls over
	waitStdinEnv   = "GRPCIPC_TEST_WAIT_STDIN" // callfd waits for a line on stdin first
)

func init() {
	// connect-then ENDPOINT MODE [EXE]: connect, keep the descriptor across
	// exec, then
	//   child-exec-true: start a callfd child with the connection and exec
	//                    /bin/true at once (the connecting process is gone);
	//   exec EXE:        wait until the server has surely accepted, then exec
	//                    EXE as a callfd helper over the same connection.
	testutil.RegisterHelper("connect-then", func(args []string) error {
		addr, err := e2e.UnixAddr(args[0])
		if err != nil {
			return err
		}
		c, err := net.Dial("unix", addr)
		if err != nil {
			return err
		}
		f, err := c.(*net.UnixConn).File()
		if err != nil {
			return err
		}
		fd := int(f.Fd())
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return err
		}
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, testutil.HelperEnv+"=") {
				env = append(env, kv)
			}
		}
		env = append(env, testutil.HelperEnv+"=callfd", inheritedFDEnv+"="+strconv.Itoa(fd))
		switch args[1] {
		case "child-exec-true":
			child := exec.Command(os.Args[0], "-test.run=^$", "WhoAmI", "SayHello")
			child.Env = append(env, waitStdinEnv+"=1")
			child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
			if err := child.Start(); err != nil {
				return err
			}
			return unix.Exec("/bin/true", []string{"true"}, os.Environ())
		case "exec":
			time.Sleep(300 * time.Millisecond) // the server accepts in microseconds
			return unix.Exec(args[2], []string{args[2], "-test.run=^$", "WhoAmI"}, env)
		}
		return fmt.Errorf("no mode %q", args[1])
	})

	// callfd METHOD...: call each method over the inherited connection and
	// print {"METHOD": "CODE", ...}.
	testutil.RegisterHelper("callfd", func(args []string) error {
		if os.Getenv(waitStdinEnv) != "" {
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return fmt.Errorf("waiting for the go-ahead: %w", err)
			}
		}
		fd, err := strconv.Atoi(os.Getenv(inheritedFDEnv))
		if err != nil {
			return fmt.Errorf("%s: %w", inheritedFDEnv, err)
		}
		conn, err := net.FileConn(os.NewFile(uintptr(fd), "inherited"))
		if err != nil {
			return err
		}
		used := false
		cc, err := grpc.NewClient("passthrough:///inherited",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
				if used {
					return nil, fmt.Errorf("the inherited connection is used up")
				}
				used = true
				return conn, nil
			}))
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out := map[string]string{}
		for _, m := range args {
			switch m {
			case "Check":
				_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			case "SayHello":
				_, err = greetpb.NewGreeterClient(cc).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
			case "WhoAmI":
				_, err = identitypb.NewIdentityClient(cc).WhoAmI(ctx, &identitypb.WhoAmIRequest{})
			default:
				return fmt.Errorf("no method %q", m)
			}
			out[m] = status.Code(err).String()
		}
		return json.NewEncoder(os.Stdout).Encode(out)
	})
}

// runAttack runs cmd with a pipe for stdin and stdout, waits for the
// process it started to exit, then tells the callfd process (which
// inherited both pipes) to go on and returns what it printed.
func runAttack(t *testing.T, cmd *exec.Cmd, goAhead bool) map[string]string {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	defer outR.Close()
	cmd.Stdin, cmd.Stdout = inR, outW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("attacker: %v", err)
	}
	if goAhead { // the connecting process is gone and reaped
		fmt.Fprintln(inW)
	}
	outR.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(outR).ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading what the attacker's call printed: %v", err)
	}
	res := map[string]string{}
	if err := json.Unmarshal(line, &res); err != nil {
		t.Fatalf("attacker printed %q: %v", line, err)
	}
	return res
}

// A deny rule on a supplementary group must hold when the process that
// connected is gone by the time the call comes: the groups are the ones
// the kernel recorded at connect (SO_PEERGROUPS), not read from /proc.
func TestDenyOnGroupHoldsAfterConnectingProcessExits(t *testing.T) {
	testutil.RequireRoot(t)
	const banned = 4242
	p := e2e.MustPolicy(t, `{"name": "deny-banned",
		"deny_rules": [{"name": "banned", "source": {"principals": ["gid:4242"]}, "request": {"paths": ["/grpcipc.v1.Identity/*"]}}],
		"allow_rules": [{"name": "all", "source": {"principals": ["*"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	gs := e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(p))
	for i := range 3 {
		cmd := testutil.HelperCommandAt(t, testutil.SharedExecutable(t), 12345, 12345, []int{banned}, "connect-then", endpoint, "child-exec-true")
		res := runAttack(t, cmd, true)
		if res["WhoAmI"] != "PermissionDenied" {
			t.Errorf("try %d: a member of the banned group called WhoAmI over a connection whose connecting process had exited: %s", i, res["WhoAmI"])
		}
		if res["SayHello"] != "OK" {
			t.Errorf("try %d: SayHello over the handed-over connection: %s (want OK: the attack itself must work)", i, res["SayHello"])
		}
	}
	if log := gs.Log.String(); !strings.Contains(log, "rule=banned") {
		t.Errorf("the server log does not name the deny rule:\n%s", log)
	}
}

// The executable is read once, when the connection is accepted: a process
// that connects and then execs the allowed program is not admitted.
func TestExeReadAtAcceptNotAfterExec(t *testing.T) {
	testutil.RequireRoot(t)
	allowed := testutil.CopyExecutable(t)
	p, err := grpcipc.NewPolicy("exe", nil, []grpcipc.Rule{
		{Name: "hello", Methods: []string{"/greet.Greeter/SayHello"}},
		{Name: "whoami-for-allowed", Methods: []string{"/grpcipc.v1.Identity/*"},
			Principals: []grpcipc.Principal{grpcipc.AllOf(e2e.MustPrincipal(t, "uid:65534"), e2e.MustPrincipal(t, "exe:"+allowed))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(p))

	// Control: the allowed program, run as uid 65534, is admitted.
	ctl := testutil.HelperCommandAt(t, allowed, testutil.Nobody, testutil.Nobody, nil, "call", endpoint, "WhoAmI")
	out, err := ctl.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"code":"OK"`) {
		t.Fatalf("the allowed executable was refused: %s", out)
	}
	// Attack: connect as another program, then exec the allowed one.
	cmd := testutil.HelperCommandAt(t, testutil.SharedExecutable(t), testutil.Nobody, testutil.Nobody, nil, "connect-then", endpoint, "exec", allowed)
	if res := runAttack(t, cmd, false); res["WhoAmI"] != "PermissionDenied" {
		t.Errorf("a process that connected as another program and then exec'd the allowed one got %s; want PermissionDenied", res["WhoAmI"])
	}
}

// A mount namespace can make one's own program appear at the allowed path
// (unshare -Urm plus a bind mount): the executable is compared by device
// and inode, and a caller in another mount namespace has no known
// executable.
func TestExeNotFooledByMountNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) from util-linux")
	}
	allowed := testutil.CopyExecutable(t)
	own := testutil.SharedExecutable(t)
	probe := exec.Command("unshare", "-Urm", "true")
	testutil.SetCredential(probe, testutil.Nobody, testutil.Nobody, nil)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("this kernel does not let an unprivileged user make user and mount namespaces: %v %s", err, out)
	}
	p, err := grpcipc.NewPolicy("exe", nil, []grpcipc.Rule{{Name: "allowed-program",
		Principals: []grpcipc.Principal{grpcipc.AllOf(e2e.MustPrincipal(t, "uid:65534"), e2e.MustPrincipal(t, "exe:"+allowed))}}})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	gs := e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(p))
	script := fmt.Sprintf("mount --bind %s %s && exec %s -test.run='^$' %s SayHello '*'", own, allowed, allowed, endpoint)
	cmd := exec.Command("unshare", "-Urm", "sh", "-c", script)
	cmd.Env = append(os.Environ(), testutil.HelperEnv+"=call", testutil.QuickRaceExit)
	cmd.Stderr = os.Stderr
	testutil.SetCredential(cmd, testutil.Nobody, testutil.Nobody, nil)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the attacker's call: %v", err)
	}
	var res e2e.CallResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("attacker printed %q: %v", out, err)
	}
	if res.Code != "PermissionDenied" {
		t.Errorf("a bind mount of another program over %s in the caller's own mount namespace got %s; want PermissionDenied", filepath.Base(allowed), res.Code)
	}
	if gs.Srv.Calls.Load() != 0 {
		t.Error("a handler ran for the attacker")
	}
}
