package children

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestChildEndsWithParent: a parent killed with SIGKILL (no Close, no
// clean-up) takes its child with it within a second.
func TestChildEndsWithParent(t *testing.T) {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "parent-of-child")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	line, err := testutil.Start(t, cmd).ReadString('\n')
	if err != nil {
		t.Fatalf("the parent printed %q: %v", line, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || gone(pid) {
		t.Fatalf("the parent printed %q, not a live child's pid", line)
	}
	cmd.Process.Kill()
	cmd.Wait()
	killed := time.Now()
	for !gone(pid) {
		if time.Since(killed) > time.Second {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the child (pid %d) outlived its killed parent by a second", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the child was gone %v after its parent", time.Since(killed))
}

// TestChildStubborn: a child that ignores SIGTERM and its closed connection
// is killed after the stop timeout, and Close says so.
func TestChildStubborn(t *testing.T) {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "stubborn")
	child, err := grpcipc.StartChild(context.Background(), cmd, grpcipc.WithStopTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let it ignore SIGTERM
	start := time.Now()
	err = child.Close()
	if err == nil || !strings.Contains(err.Error(), "did not exit within 300ms") {
		t.Errorf("Close: %v; want it to say the child was killed", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Close took %v; want the stop timeout, 300ms", d)
	}
	if !gone(child.PID()) {
		t.Error("the child is still running")
	}
}

// TestChildSignalledDuringCall: a child that a signal ends while it serves
// a call (here sent by itself) fails the call with Unavailable, and Close,
// called at once, names the signal every time: SIGKILL, which Close sends
// only after its timeout, and SIGTERM, which Close sends too, and which it
// must not take for its own when the child's connection broke first.
func TestChildSignalledDuringCall(t *testing.T) {
	for _, tc := range []struct {
		how  string
		sig  os.Signal
		runs int
	}{{"term", syscall.SIGTERM, 100}, {"kill", syscall.SIGKILL, 20}} {
		t.Run(tc.how, func(t *testing.T) {
			for range tc.runs {
				child := startExiting(t, tc.how)
				err := child.Close()
				checkExit(t, child, err, -1, "had exited: signal: "+tc.sig.String())
				var exit *grpcipc.ChildExitError
				if errors.As(err, &exit); exit.Signal != tc.sig {
					t.Fatalf("Close: %v names signal %v; want %v", err, exit.Signal, tc.sig)
				}
			}
		})
	}
}

// TestChildStoppedBySIGTERM: a child that does not exit when its connection
// closes, and dies of Close's SIGTERM, was stopped cleanly: Close and Wait
// return nil; ExitCode is -1.
func TestChildStoppedBySIGTERM(t *testing.T) {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child-ignores-close")
	child, err := grpcipc.StartChild(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Close(); err != nil {
		t.Errorf("Close: %v; want nil", err)
	}
	if err := child.Wait(); err != nil || child.ExitCode() != -1 {
		t.Errorf("Wait: %v, ExitCode %d; want nil and -1", err, child.ExitCode())
	}
}
