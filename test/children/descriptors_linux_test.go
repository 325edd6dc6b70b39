package children

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// TestChildLingeringDescriptor: a descriptor the child attaches to the
// connection, whose close would block (a TCP socket with SO_LINGER and
// unsent data), does not hang the parent's reads or Close: the kernel
// would close it inside a plain read, past any deadline.
func TestChildLingeringDescriptor(t *testing.T) {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child-lingers")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	child, err := grpcipc.StartChild(ctx, cmd, grpcipc.WithStopTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Once the child has let go of what it sent, this process's read
	// holds the last reference.
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "sent\n" {
		t.Fatalf("the child said %q, %v", line, err)
	}
	done := make(chan error, 1)
	go func() {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := identitypb.NewIdentityClient(child.Conn()).WhoAmI(callCtx, &identitypb.WhoAmIRequest{})
		child.Close()
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a call to a child that answered with a descriptor succeeded")
		}
		t.Logf("the call: %v", err)
	case <-time.After(8 * time.Second):
		cmd.Process.Kill()
		t.Fatal("a call and Close hung on a descriptor the child attached")
	}
}

// TestServerLingeringDescriptor: a caller that attaches to its first bytes
// a descriptor whose close blocks does not hold up the server: other calls
// are served and Stop returns.
func TestServerLingeringDescriptor(t *testing.T) {
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcipc.NewServer(grpcipc.WithHandshakeTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	identity.Register(srv)
	// The caller connects and sends, and lets go of what it sent, before
	// the server accepts: the server's read then holds the last reference.
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "lingers-at", endpoint)
	if line, err := testutil.Start(t, cmd).ReadString('\n'); err != nil || line != "sent\n" {
		t.Fatalf("the helper said %q, %v", line, err)
	}
	go srv.Serve(l)
	time.Sleep(1500 * time.Millisecond) // past the handshake timeout: the server closes that connection
	conn := e2e.NewClient(t, endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := identitypb.NewIdentityClient(conn).WhoAmI(ctx, &identitypb.WhoAmIRequest{}); err != nil {
		t.Errorf("another call while a caller's descriptor lingers: %v", err)
	}
	stopped := make(chan struct{})
	go func() {
		srv.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-stopped
		t.Fatal("Stop waited on a connection whose reader the kernel kept closing a descriptor")
	}
}

// TestChildGrandchildInheritsNothing: a process the child starts before it
// calls ChildListener inherits neither the bootstrap descriptors nor
// GRPCIPC_CHILD (they are claimed when the package initialises), and the
// child then serves its parent and calls it back as usual.
func TestChildGrandchildInheritsNothing(t *testing.T) {
	parentSrv, err := grpcipc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	identity.Register(parentSrv)
	t.Cleanup(parentSrv.Stop)
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "spawn-first", "call-parent")
	goAhead, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	child, err := grpcipc.StartChild(ctx, cmd, grpcipc.WithParentServer(parentSrv))
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()

	// The bootstrap descriptors, as the parent named them to the child.
	var spec []string
	for _, kv := range cmd.Env {
		if v, ok := strings.CutPrefix(kv, "GRPCIPC_CHILD="); ok {
			spec = strings.Fields(v)[1:]
		}
	}
	if len(spec) != 2 {
		t.Fatalf("GRPCIPC_CHILD names %v; want two descriptors", spec)
	}
	boot := map[string]bool{}
	for _, s := range spec {
		boot[strings.TrimPrefix(s, "fd:")] = true
	}

	r := bufio.NewReader(stdout)
	var fds []string // "N -> TARGET" of each descriptor the grandchild holds
	inEnv := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the child's report ended early (%v); so far: %q", err, fds)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "end" {
			break
		}
		if line == "ENV" {
			inEnv = true
			continue
		}
		if inEnv {
			if strings.HasPrefix(line, "GRPCIPC_CHILD=") {
				t.Errorf("the grandchild inherited %s", line)
			}
			continue
		}
		// lrwx------ 1 user group 64 DATE 3 -> socket:[123]
		before, target, ok := strings.Cut(line, " -> ")
		if !ok {
			continue
		}
		f := strings.Fields(before)
		fd := f[len(f)-1]
		fds = append(fds, fd+" -> "+target)
		if boot[fd] || strings.HasPrefix(target, "socket:") {
			t.Errorf("the grandchild inherited descriptor %s -> %s (the bootstrap descriptors are %v)", fd, target, spec)
		}
	}
	t.Logf("the grandchild's descriptors: %q", fds)
	if len(fds) < 3 {
		t.Errorf("the grandchild's descriptors: %q; want at least its standard ones listed", fds)
	}

	// The child serves its parent, and calls it back, all the same.
	who, err := identitypb.NewIdentityClient(child.Conn()).WhoAmI(ctx, &identitypb.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if who.GetPid() != int64(os.Getpid()) {
		t.Errorf("the child sees its caller as pid %d; want %d", who.GetPid(), os.Getpid())
	}
	fmt.Fprintln(goAhead, "go")
	reply, err := greetpb.NewGreeterClient(child.Conn()).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("the parent sees pid %d over %s", cmd.Process.Pid, grpcipc.Inherited); !strings.HasPrefix(reply.GetMessage(), want) {
		t.Errorf("the child says %q; want %q", reply.GetMessage(), want)
	}
	if err := child.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
