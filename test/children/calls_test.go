package children

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestChildCallsBothWays: a parent starts a child over an inherited
// connection, calls it (on the fast path) and is called back on its own
// services; each sees the other's real identity; Close ends the child.
func TestChildCallsBothWays(t *testing.T) {
	ctx, cmd, goAhead, child := startCallingChild(t)

	if pid, ok := child.Identity().PID(); !ok || pid != cmd.Process.Pid || child.PID() != pid {
		t.Errorf("the child's identity says pid %d (%v); StartChild started %d", pid, ok, cmd.Process.Pid)
	}
	if uid, ok := child.Identity().UID(); ok && uid != os.Geteuid() {
		t.Errorf("the child's uid is %d; it runs as %d", uid, os.Geteuid())
	}

	// The child's view of its caller: this process, over an inherited connection.
	who, err := identitypb.NewIdentityClient(child.Conn()).WhoAmI(ctx, &identitypb.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if who.GetPid() != int64(os.Getpid()) || who.GetTransport() != string(grpcipc.Inherited) {
		t.Errorf("the child sees its caller as %v; want pid %d over %s", who, os.Getpid(), grpcipc.Inherited)
	}
	if p := child.Conn().Protocol(); p != grpcipc.ProtocolFast {
		t.Errorf("the parent speaks %q to the child; want the fast path", p)
	}

	// The child calls back: this process's Identity sees the child.
	fmt.Fprintln(goAhead, "go")
	reply, err := greetpb.NewGreeterClient(child.Conn()).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("the parent sees pid %d over %s (%s)", cmd.Process.Pid, grpcipc.Inherited, grpcipc.ProtocolFast)
	if reply.GetMessage() != want {
		t.Errorf("the child says %q; want %q", reply.GetMessage(), want)
	}

	start := time.Now()
	if err := child.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-child.Exited():
	default:
		t.Error("Close returned before the child exited")
	}
	t.Logf("Close took %v", time.Since(start))
	if _, err := greetpb.NewGreeterClient(child.Conn()).SayHello(ctx, &greetpb.HelloRequest{}); status.Code(err) != codes.Canceled {
		t.Errorf("a call after Close: %v; want Canceled", err)
	}
}

// TestNotAChild: in a process StartChild did not start, ChildListener and
// ParentConn say so.
func TestNotAChild(t *testing.T) {
	if _, err := grpcipc.ChildListener(); !errors.Is(err, grpcipc.ErrNotChild) {
		t.Errorf("ChildListener: %v; want ErrNotChild", err)
	}
	if _, err := grpcipc.ParentConn(); !errors.Is(err, grpcipc.ErrNotChild) {
		t.Errorf("ParentConn: %v; want ErrNotChild", err)
	}
}

// TestParentCallsLate: a parent that makes its first call after the
// child's handshake timeout has passed is served: that timeout is for
// strangers, and the one connection to the parent, dropped, would not
// come back.
func TestParentCallsLate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child-short-timeout")
	child, err := grpcipc.StartChild(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	time.Sleep(500 * time.Millisecond) // 5 of the child's handshake timeouts
	if _, err := identitypb.NewIdentityClient(child.Conn()).WhoAmI(ctx, &identitypb.WhoAmIRequest{}); err != nil {
		t.Fatalf("a first call 500 ms after the start: %v", err)
	}
}
