package grpcipc_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func init() {
	// child [call-parent]: serves greet.Greeter and Identity to the parent
	// that started it with StartChild. With call-parent, SayHello first
	// waits for a line on standard input (the test's go-ahead), then asks
	// the parent's Identity how the parent sees this process, and answers
	// with that. Returns when the parent's connection closes.
	grpcipc.RegisterHelper("child", childMain)
}

// childMain is the child helper (see init).
func childMain(args []string) error {
	lis, err := grpcipc.ChildListener()
	if err != nil {
		return err
	}
	srv, err := grpcipc.NewServer()
	if err != nil {
		return err
	}
	g := &childGreeter{}
	if len(args) > 0 && args[0] == "call-parent" {
		g.stdin = bufio.NewReader(os.Stdin)
	}
	greetpb.RegisterGreeterServer(srv, g)
	identity.Register(srv)
	err = srv.Serve(lis)
	if g.parent != nil {
		g.parent.Close()
	}
	if errors.Is(err, grpcipc.ErrNotChild) {
		return err
	}
	return nil // the parent went away: the end
}

type childGreeter struct {
	greetpb.UnimplementedGreeterServer
	stdin  *bufio.Reader
	parent *grpcipc.ClientConn
}

func (g *childGreeter) SayHello(ctx context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	if g.stdin == nil {
		return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
	}
	if g.parent == nil {
		g.stdin.ReadString('\n')
		conn, err := grpcipc.ParentConn()
		if err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "ParentConn: %v", err)
		}
		g.parent = conn
	}
	who, err := identitypb.NewIdentityClient(g.parent).WhoAmI(ctx, &identitypb.WhoAmIRequest{})
	if err != nil {
		return nil, err
	}
	return &greetpb.HelloReply{Message: fmt.Sprintf("the parent sees pid %d over %s (%s)", who.GetPid(), who.GetTransport(), g.parent.Protocol())}, nil
}

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
	if err := child.Close(); err == nil || !strings.Contains(err.Error(), "had exited") {
		t.Errorf("Close of a dead child: %v; want it to say the child had exited", err)
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

// startCallingChild starts the child helper with call-parent, this process
// serving Identity to it; goAhead lets its SayHello call back. The child is
// closed, and the server stopped, when the test ends.
func startCallingChild(t *testing.T) (context.Context, *exec.Cmd, io.Writer, *grpcipc.Child) {
	t.Helper()
	parentSrv, err := grpcipc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	identity.Register(parentSrv)
	t.Cleanup(parentSrv.Stop)
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child", "call-parent")
	goAhead, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	child, err := grpcipc.StartChild(ctx, cmd, grpcipc.WithParentServer(parentSrv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Close() })
	return ctx, cmd, goAhead, child
}
