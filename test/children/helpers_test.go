package children

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
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
	testutil.RegisterHelper("child", childMain)
	// child-exits CODE: serves greet.Greeter, whose SayHello makes the
	// process exit with status CODE (0: a clean exit) while it serves
	// the call; CODE "term" or "kill": sends itself SIGTERM or SIGKILL.
	// child-short-timeout: serves Identity with a handshake timeout of
	// 100 ms, which strangers' connections get and the parent's does not.
	testutil.RegisterHelper("child-short-timeout", func([]string) error {
		err := serveChild(nil, grpcipc.WithHandshakeTimeout(100*time.Millisecond))
		if errors.Is(err, grpcipc.ErrPeerGone) {
			err = nil
		}
		return err
	})
	testutil.RegisterHelper("child-exits", func(args []string) error {
		return serveChild(exitingGreeter{how: args[0]})
	})
	// child-fails-at-close: serves Identity, then exits with status 4
	// once the parent has closed the connection (ignoring SIGTERM).
	testutil.RegisterHelper("child-fails-at-close", func([]string) error {
		signal.Ignore(syscall.SIGTERM)
		if err := serveChild(nil); errors.Is(err, grpcipc.ErrPeerGone) {
			os.Exit(4)
		}
		return nil
	})
	// child-writes: writes lines to standard output and error (one with
	// "\r\n", one of childLongLine), serves Identity until the parent
	// closes the connection (ignoring SIGTERM), then writes a last line
	// without a newline and exits.
	testutil.RegisterHelper("child-writes", func([]string) error {
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprint(os.Stdout, "one\ntwo\r\n")
		fmt.Fprint(os.Stderr, "on stderr\n")
		os.Stdout.WriteString(childLongLine + "\n")
		err := serveChild(nil)
		os.Stdout.WriteString("three")
		if errors.Is(err, grpcipc.ErrPeerGone) {
			err = nil
		}
		return err
	})
}

// childLongLine is longer than WithChildOutput's 64 KiB bound, with a
// two-byte character across it.
var childLongLine = strings.Repeat("a", 64<<10-1) + "é" + strings.Repeat("b", 100<<10)

// serveChild serves Identity, and greet.Greeter when g is not nil, on
// ChildListener until the parent goes away.
func serveChild(g greetpb.GreeterServer, opts ...grpcipc.ServerOption) error {
	lis, err := grpcipc.ChildListener()
	if err != nil {
		return err
	}
	srv, err := grpcipc.NewServer(opts...)
	if err != nil {
		return err
	}
	if g != nil {
		greetpb.RegisterGreeterServer(srv, g)
	}
	identity.Register(srv)
	return srv.Serve(lis)
}

// exitingGreeter ends the process in SayHello: see the child-exits helper.
type exitingGreeter struct {
	greetpb.UnimplementedGreeterServer
	how string
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

func (g exitingGreeter) SayHello(context.Context, *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	endProcess(g.how)
	return nil, status.Error(codes.Internal, "still running")
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

// endProcess ends this process as the child-exits helper's argument says:
// an exit status, or "term" or "kill" for SIGTERM or SIGKILL from itself.
func endProcess(how string) {
	self, _ := os.FindProcess(os.Getpid())
	switch how {
	case "term":
		self.Signal(syscall.SIGTERM)
	case "kill":
		self.Signal(os.Kill)
	default:
		code, _ := strconv.Atoi(how)
		os.Exit(code)
	}
	time.Sleep(time.Minute) // the signal ends the process
}
