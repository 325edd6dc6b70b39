package grpcipc_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"go.uber.org/goleak"
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
	// child-exits CODE: serves greet.Greeter, whose SayHello makes the
	// process exit with status CODE (0: a clean exit) while it serves
	// the call; CODE "term" or "kill": sends itself SIGTERM or SIGKILL.
	grpcipc.RegisterHelper("child-exits", func(args []string) error {
		return serveChild(exitingGreeter{how: args[0]})
	})
	// child-fails-at-close: serves Identity, then exits with status 4
	// once the parent has closed the connection (ignoring SIGTERM).
	grpcipc.RegisterHelper("child-fails-at-close", func([]string) error {
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
	grpcipc.RegisterHelper("child-writes", func([]string) error {
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
func serveChild(g greetpb.GreeterServer) error {
	lis, err := grpcipc.ChildListener()
	if err != nil {
		return err
	}
	srv, err := grpcipc.NewServer()
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

// recordingHandler keeps the records a slog.Logger gives it.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// outputLine is a record of WithChildOutput.
type outputLine struct {
	msg, stream string
	pid         int64
	partial     bool
}

func (h *recordingHandler) lines() []outputLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []outputLine
	for _, r := range h.records {
		l := outputLine{msg: r.Message}
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "pid":
				l.pid = a.Value.Int64()
			case "stream":
				l.stream = a.Value.String()
			case "partial":
				l.partial = a.Value.Bool()
			}
			return true
		})
		out = append(out, l)
	}
	return out
}

// TestChildOutput: WithChildOutput logs the child's standard output and
// error line by line with its PID, a line over 64 KiB in parts (whole
// characters each), and the last line without a newline, which the child
// writes as it exits, before Close returns; nothing is left running.
func TestChildOutput(t *testing.T) {
	opts := append(slices.Clone(testutil.LeakOptions), goleak.IgnoreCurrent())
	defer goleak.VerifyNone(t, opts...)
	h := &recordingHandler{}
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child-writes")
	cmd.Stderr = nil
	child, err := grpcipc.StartChild(context.Background(), cmd, grpcipc.WithChildOutput(slog.New(h)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identitypb.NewIdentityClient(child.Conn()).WhoAmI(context.Background(), &identitypb.WhoAmIRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := child.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var stdout, stderr []string
	var long strings.Builder
	for _, l := range h.lines() {
		if l.pid != int64(child.PID()) {
			t.Errorf("a line logged with pid %d; the child is %d", l.pid, child.PID())
		}
		if !utf8.ValidString(l.msg) {
			t.Errorf("a line cut inside a character: ...%q", l.msg[len(l.msg)-4:])
		}
		switch {
		case l.stream == "stdout" && (l.partial || long.Len() > 0):
			long.WriteString(l.msg)
			if !l.partial {
				stdout = append(stdout, long.String())
				long.Reset()
			} else if len(l.msg) > 64<<10 {
				t.Errorf("a part of %d bytes; want at most 64 KiB", len(l.msg))
			}
		case l.stream == "stdout":
			stdout = append(stdout, l.msg)
		case l.stream == "stderr":
			stderr = append(stderr, l.msg)
		default:
			t.Errorf("a line logged from stream %q", l.stream)
		}
	}
	if want := []string{"one", "two", childLongLine, "three"}; !slices.Equal(stdout, want) {
		t.Errorf("stdout logged as %d lines (%.40q...); want %d: one, two, the long line, three", len(stdout), stdout, len(want))
	}
	if want := []string{"on stderr"}; !slices.Equal(stderr, want) {
		t.Errorf("stderr logged as %q; want %q", stderr, want)
	}
	if parts := len(h.lines()); parts != 7 {
		t.Errorf("%d records; want 7 (the long line in 3 parts)", parts)
	}
}

// TestChildOutputConflicts: WithChildOutput with cmd.Stdout already set is
// an error, not output silently sent elsewhere.
func TestChildOutputConflicts(t *testing.T) {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child")
	if _, err := grpcipc.StartChild(context.Background(), cmd, grpcipc.WithChildOutput(slog.Default())); err == nil || !strings.Contains(err.Error(), "cmd.Stderr is set") {
		t.Errorf("StartChild with cmd.Stderr set and WithChildOutput: %v; want an error", err)
	}
	if cmd.Process != nil {
		t.Error("the command was started")
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
