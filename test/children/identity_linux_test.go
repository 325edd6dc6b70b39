package children

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestChildIsTheProcessStarted: a connection made by another process than
// the one StartChild started (here the child's own child, given the
// inherited descriptor) is refused.
func TestChildIsTheProcessStarted(t *testing.T) {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "delegate")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	child, err := grpcipc.StartChild(ctx, cmd)
	if err == nil {
		child.Close()
		t.Fatal("StartChild accepted a connection made by the child's own child")
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("not by the child the parent started (pid %d)", cmd.Process.Pid)) {
		t.Errorf("StartChild: %v; want it to name the process that was started", err)
	}
}

// TestChildIdentityAfterLauncher: a launcher that drops privileges and
// execs the child (setpriv) does not lend it its own: the identity is the
// one the child has when it makes its connection.
func TestChildIdentityAfterLauncher(t *testing.T) {
	testutil.RequireRoot(t)
	setpriv := testutil.Tool(t, "setpriv", "apt-get install util-linux")
	exe := testutil.SharedExecutable(t)
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), testutil.HelperEnv+"=child", testutil.QuickRaceExit)
	cmd.Stderr = os.Stderr
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The child (uid 65534) checks this server (root) as any client does.
	child, err := grpcipc.StartChild(ctx, cmd, grpcipc.WithChildClientOptions(grpcipc.WithExpectedServer(grpcipc.Anyone())))
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	uid, _ := child.Identity().UID()
	exePath, _ := child.Identity().Executable()
	if uid != 65534 || exePath != exe {
		t.Errorf("the child is %s; want uid 65534 running %s, not the launcher as root", child.Identity(), exe)
	}
}

// TestChildForgedEnvironment: GRPCIPC_CHILD naming a descriptor that is
// not an inherited socket (a file; one the runtime opened) is refused, and
// the descriptor is left open.
func TestChildForgedEnvironment(t *testing.T) {
	file, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name  string
		files []*os.File
		fd    string
		want  string
	}{
		{"an inherited file", []*os.File{file}, "3", "descriptor 3 is not a socket"},
		{"one of the runtime's", nil, "3", "descriptor 3 was not inherited"},
		{"not open", nil, "900", "descriptor 900 is not open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "forged", tc.fd)
			cmd.Env = append(cmd.Env, "GRPCIPC_CHILD=1 fd:"+tc.fd)
			cmd.ExtraFiles = tc.files
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("ChildListener said %q; want %q", out, tc.want)
			}
			if tc.fd != "900" && strings.Contains(string(out), "closed") {
				t.Errorf("ChildListener closed a descriptor it refused: %s", out)
			}
		})
	}
}

// TestChildIdentityLinux: the child's identity names its executable, read
// through the process StartChild started.
func TestChildIdentityLinux(t *testing.T) {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child")
	child, err := grpcipc.StartChild(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	exe, ok := child.Identity().Executable()
	self, _ := os.Executable()
	if !ok || exe != self {
		t.Errorf("the child's executable is %q (%v); want %q", exe, ok, self)
	}
	if groups, ok := child.Identity().Groups(); !ok {
		t.Errorf("the child's groups are not known: %v", groups)
	}
}

// TestChildBadProofs: a child that answers with anything but a socket pair
// of its own making (an unconnected socket, which the kernel names no
// process for; a listening socket; two descriptors; none) is refused, and
// the parent does not crash.
func TestChildBadProofs(t *testing.T) {
	for _, mode := range []string{"unconnected", "listening", "two", "none"} {
		t.Run(mode, func(t *testing.T) {
			cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child-sends", mode)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			child, err := grpcipc.StartChild(ctx, cmd)
			if err == nil {
				child.Close()
				t.Fatalf("StartChild accepted a child that sent %s", mode)
			}
			t.Logf("%s: %v", mode, err)
		})
	}
}
