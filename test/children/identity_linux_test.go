package grpcipc_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
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
	"golang.org/x/sys/unix"
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
	// stubborn: a child that takes its connection, then ignores SIGTERM
	// and the connection closing.
	grpcipc.RegisterHelper("stubborn", func([]string) error {
		signal.Ignore(syscall.SIGTERM)
		if _, err := grpcipc.ChildListener(); err != nil {
			return err
		}
		time.Sleep(time.Minute)
		return nil
	})
	// child-ignores-close: takes its connection, and waits for a signal
	// (SIGTERM's default action ends it).
	grpcipc.RegisterHelper("child-ignores-close", func([]string) error {
		if _, err := grpcipc.ChildListener(); err != nil {
			return err
		}
		time.Sleep(time.Minute)
		return nil
	})
	// delegate: a child that hands its inherited descriptor to a process
	// of its own, which sends the parent a connection of its making.
	grpcipc.RegisterHelper("delegate", func([]string) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), testutil.HelperEnv+"=child-impostor")
		cmd.ExtraFiles = []*os.File{os.NewFile(3, "inherited")}
		cmd.Stderr = os.Stderr
		return cmd.Run()
	})
	// child-impostor: sends a socket of its own making over inherited fd
	// 3, as ChildListener would, without its checks.
	grpcipc.RegisterHelper("child-impostor", func([]string) error {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(fds[1]), nil, 0); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // keep the connection open while the parent looks at it
		return nil
	})
	// child-sends MODE: answers the parent over fd 3 with what MODE says
	// instead of a proof of its own making, and waits.
	grpcipc.RegisterHelper("child-sends", func(args []string) error {
		var fds []int
		switch args[0] {
		case "unconnected":
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			fds = []int{fd}
		case "listening":
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@grpcipc-child-sends-" + strconv.Itoa(os.Getpid())}); err != nil {
				return err
			}
			if err := unix.Listen(fd, 1); err != nil {
				return err
			}
			fds = []int{fd}
		case "two":
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			fds = pair[:]
		case "none":
		}
		if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(fds...), nil, 0); err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		return nil
	})
	// child-lingers: sends a proof of its own making, as ChildListener
	// would, then attaches to the connection a TCP socket whose close
	// blocks (unsent data, SO_LINGER of an hour, a peer that never reads).
	grpcipc.RegisterHelper("child-lingers", func([]string) error {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(pair[1]), nil, 0); err != nil {
			return err
		}
		cleanup, err := sendLingering(3)
		if err != nil {
			return err
		}
		defer cleanup()
		fmt.Println("sent")
		time.Sleep(time.Minute)
		return nil
	})
	// lingers-at ENDPOINT: connects to a server and attaches a TCP socket
	// whose close blocks to the first byte it sends.
	grpcipc.RegisterHelper("lingers-at", func(args []string) error {
		ep, err := grpcipc.ParseEndpoint(args[0])
		if err != nil {
			return err
		}
		addr := ep.Address
		if ep.Transport == grpcipc.UnixAbstract {
			addr = "@" + addr
		}
		c, err := net.Dial("unix", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		f, err := c.(*net.UnixConn).File()
		if err != nil {
			return err
		}
		cleanup, err := sendLingering(int(f.Fd()))
		f.Close()
		if err != nil {
			return err
		}
		defer cleanup()
		fmt.Println("sent")
		time.Sleep(time.Minute)
		return nil
	})
	// spawn-first [call-parent]: before it calls ChildListener, starts a
	// process of its own (a shell) that prints the descriptors and the
	// environment it inherited, relays that on standard output up to a
	// line "end", then goes on as the child helper does.
	grpcipc.RegisterHelper("spawn-first", func(args []string) error {
		out, err := exec.Command("/bin/sh", "-c", "ls -l /proc/$$/fd; echo ENV; env").Output()
		if err != nil {
			return fmt.Errorf("the grandchild: %w", err)
		}
		fmt.Printf("%send\n", out)
		return childMain(args)
	})
	// forged: GRPCIPC_CHILD names a descriptor that is not an inherited
	// socket pair; ChildListener must refuse it and leave it open.
	// The descriptor is the argument: the variable is gone from the
	// environment once the package is initialised.
	grpcipc.RegisterHelper("forged", func(args []string) error {
		fd, _ := strconv.Atoi(args[0])
		_, err := grpcipc.ChildListener()
		fmt.Println("error:", err)
		if _, ferr := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); ferr != nil {
			fmt.Println("the descriptor was closed")
		}
		return nil
	})
}

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
	child, err := grpcipc.StartChild(ctx, cmd, grpcipc.WithChildClientOptions(grpcipc.WithExpectedServer("*")))
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

// sendLingering sends "x" over the Unix socket fd with a descriptor whose
// last close blocks for an hour, so that the receiver holds the last
// reference, whenever it reads: the lingering TCP socket travels inside
// the queue of a socket pair's end, which is what is sent, and nothing of
// it stays open here. cleanup closes what holds the TCP socket's peer.
func sendLingering(fd int) (cleanup func(), err error) {
	f, cleanup, err := lingeringTCP()
	if err != nil {
		return nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		f.Close()
		cleanup()
		return nil, err
	}
	err = unix.Sendmsg(pair[0], []byte("y"), unix.UnixRights(int(f.Fd())), nil, 0)
	f.Close()
	unix.Close(pair[0])
	if err == nil {
		err = unix.Sendmsg(fd, []byte("x"), unix.UnixRights(pair[1]), nil, 0)
	}
	unix.Close(pair[1])
	if err != nil {
		cleanup()
		return nil, err
	}
	return cleanup, nil
}

// lingeringTCP returns a TCP socket whose last close blocks for an hour:
// its peer never reads, its queues are full, SO_LINGER is set. cleanup
// closes the listener that holds the other end.
func lingeringTCP() (*os.File, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: nothing is read
	if err != nil {
		return nil, nil, err
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	defer c.Close()
	chunk := make([]byte, 1<<20)
	c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		if _, err := c.Write(chunk); err != nil {
			break // the queues are full
		}
	}
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	if err := unix.SetsockoptLinger(int(f.Fd()), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 3600}); err != nil {
		f.Close()
		l.Close()
		return nil, nil, err
	}
	return f, func() { l.Close() }, nil
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
	conn := newClient(t, endpoint)
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
