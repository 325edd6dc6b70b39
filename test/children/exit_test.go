package children

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestChildKilled: when the child dies, calls fail with Unavailable, and
// Close says how it ended.
func TestChildKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child")
	child, err := grpcipc.StartChild(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	greeter := greetpb.NewGreeterClient(child.Conn())
	if _, err := greeter.SayHello(ctx, &greetpb.HelloRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	<-child.Exited()
	for i := range 2 { // the broken connection, then no connection at all
		_, err := greeter.SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("call %d after the child died: %v; want Unavailable", i+1, err)
		}
	}
	err = child.Close()
	var exit *grpcipc.ChildExitError
	// Kill is SIGKILL on Unix; on Windows, TerminateProcess with exit
	// status 1, which no signal names.
	wantCode, bySignal := -1, true
	if runtime.GOOS == "windows" {
		wantCode, bySignal = 1, false
	}
	if !errors.As(err, &exit) || !strings.Contains(err.Error(), "had exited") || exit.ExitCode != wantCode || (exit.Signal != nil) != bySignal {
		t.Errorf("Close of a dead child: %v; want it to say the child had exited (exit code %d, by a signal: %v)", err, wantCode, bySignal)
	}
}

// startExiting starts the child-exits helper with how, and makes the call
// that ends it, which must fail with Unavailable.
func startExiting(t *testing.T, how string, opts ...grpcipc.ChildOption) *grpcipc.Child {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child-exits", how)
	child, err := grpcipc.StartChild(ctx, cmd, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Close() })
	_, err = greetpb.NewGreeterClient(child.Conn()).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a call that ends the child (%s): %v; want Unavailable", how, err)
	}
	if want := fmt.Sprintf("the child pid %d closed the connection", child.PID()); !strings.Contains(err.Error(), want) && !strings.Contains(err.Error(), "broken pipe") && !strings.Contains(err.Error(), "reset by peer") {
		t.Errorf("a call that ends the child (%s): %v; want it to say %q", how, err, want)
	}
	return child
}

// checkExit checks that err is a *ChildExitError of the child with exit
// status code (or a signal: code -1, and want naming it), that Wait returns
// the same, and that ExitCode agrees.
func checkExit(t *testing.T, child *grpcipc.Child, err error, code int, want string) {
	t.Helper()
	var exit *grpcipc.ChildExitError
	var execExit *exec.ExitError
	switch {
	case !errors.As(err, &exit) || !errors.As(err, &execExit):
		t.Fatalf("Close: %v (%T); want a *ChildExitError wrapping an *exec.ExitError", err, err)
	case exit.PID != child.PID() || exit.ExitCode != code || exit.Killed || !strings.Contains(err.Error(), want):
		t.Fatalf("Close: %v (%+v); want exit code %d from pid %d, %q", err, exit, code, child.PID(), want)
	}
	if werr := child.Wait(); werr != err {
		t.Errorf("Wait: %v; Close returned %v", werr, err)
	}
	if c := child.ExitCode(); c != code {
		t.Errorf("ExitCode: %d; want %d", c, code)
	}
}

// TestChildExitsDuringCall: a child that exits with status 3 while it
// serves a call fails the call with Unavailable, and Close, called at once,
// says that it exited with status 3, every time: the connection breaks
// before the kernel lets the process be reaped, and Close may come first.
func TestChildExitsDuringCall(t *testing.T) {
	for i := range 100 {
		child := startExiting(t, "3")
		err := child.Close()
		checkExit(t, child, err, 3, "had exited: exit status 3")
		if i == 0 {
			t.Logf("Close: %v", err)
		}
	}
}

// TestChildWait: Wait waits for a child that ends by itself (during a
// call) and returns
// what Close returns after it, as ExitCode agrees; a child that exits 0 is
// no error; one that fails when Close stops it is.
func TestChildWait(t *testing.T) {
	for _, code := range []int{0, 5} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			child := startExiting(t, strconv.Itoa(code))
			err := child.Wait()
			select {
			case <-child.Exited():
			default:
				t.Error("Wait returned before Exited was closed")
			}
			if code == 0 {
				if err != nil || child.ExitCode() != 0 {
					t.Errorf("Wait: %v, ExitCode %d; want nil and 0", err, child.ExitCode())
				}
			} else {
				checkExit(t, child, err, code, fmt.Sprintf("had exited: exit status %d", code))
			}
			if cerr := child.Close(); cerr != err {
				t.Errorf("Close after Wait: %v; Wait returned %v", cerr, err)
			}
		})
	}
	t.Run("waiting before Close", func(t *testing.T) {
		cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child")
		child, err := grpcipc.StartChild(context.Background(), cmd)
		if err != nil {
			t.Fatal(err)
		}
		if c := child.ExitCode(); c != -1 {
			t.Errorf("ExitCode of a running child: %d; want -1", c)
		}
		waited := make(chan error, 1)
		go func() { waited <- child.Wait() }()
		if err := child.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		// The child exits 0 when its connection closes, or dies of
		// Close's SIGTERM (ExitCode -1): both are a clean stop.
		if err := <-waited; err != nil {
			t.Errorf("Wait: %v, ExitCode %d; want nil", err, child.ExitCode())
		}
	})
	t.Run("fails when stopped", func(t *testing.T) {
		cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child-fails-at-close")
		child, err := grpcipc.StartChild(context.Background(), cmd)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := identitypb.NewIdentityClient(child.Conn()).WhoAmI(context.Background(), &identitypb.WhoAmIRequest{}); err != nil {
			t.Fatal(err)
		}
		checkExit(t, child, child.Close(), 4, "exited: exit status 4")
	})
}
