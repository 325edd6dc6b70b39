package grpcipc_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

func init() {
	// parent-of-child: starts the child helper with StartChild, prints its
	// pid, and waits for standard input to close.
	grpcipc.RegisterHelper("parent-of-child", func([]string) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), testutil.HelperEnv+"=child")
		cmd.Stderr = os.Stderr
		child, err := grpcipc.StartChild(context.Background(), cmd)
		if err != nil {
			return err
		}
		defer child.Close()
		fmt.Println(child.PID())
		bufio.NewReader(os.Stdin).ReadString('\n')
		return nil
	})
	// stubborn: a child that ignores SIGTERM and never serves.
	grpcipc.RegisterHelper("stubborn", func([]string) error {
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Minute)
		return nil
	})
}

// gone reports whether process pid has exited (a zombie no one reaped has).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

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
