//go:build unix

package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The Unix convention. The parent makes a socket pair per direction and
// the child inherits its ends (fd:N in childEnv). Those pairs only carry
// the real connection: when the child calls ChildListener (or ParentConn)
// it makes a socket pair of its own and sends one end to the parent over
// the inherited one (SCM_RIGHTS). The kernel records a socket pair's
// creator, so each side learns the other's identity from the kernel, as
// of the moment the connection was made: the child from the inherited
// pair (made by the parent), the parent from the pair it receives (made by
// the child, after exec and whatever privileges it dropped), whose PID
// must be the one the parent started.

// startChild starts cmd with the child's ends of the socket pairs, and
// waits until the child has sent the connection it serves on.
func startChild(ctx context.Context, cmd *exec.Cmd, call bool, c *Child) (childConns, error) {
	n := 1
	if call {
		n = 2
	}
	var parents, children []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	spec := []string{childEnvVersion}
	for i := range n {
		fds, err := socketPair()
		if err != nil {
			closeAll(parents)
			closeAll(children)
			return childConns{}, err
		}
		parents = append(parents, os.NewFile(uintptr(fds[0]), "grpcipc-parent-"+strconv.Itoa(i)))
		children = append(children, os.NewFile(uintptr(fds[1]), "grpcipc-child-"+strconv.Itoa(i)))
		spec = append(spec, "fd:"+strconv.Itoa(3+len(cmd.ExtraFiles)+i))
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, children...)
	cmd.Env = append(envWithout(cmd.Environ(), childEnv), childEnv+"="+strings.Join(spec, " "))
	setParentDeathSignal(cmd)
	err := cmd.Start()
	// The child has its ends (or failed); this process must not keep them,
	// or it would not see the child's ends close.
	cmd.ExtraFiles = cmd.ExtraFiles[:len(cmd.ExtraFiles)-n]
	closeAll(children)
	if err != nil {
		closeAll(parents)
		return childConns{}, err
	}
	c.watch()
	var boots []*net.UnixConn
	for _, f := range parents {
		nc, err := net.FileConn(f) // a duplicate
		f.Close()
		if err != nil {
			for _, b := range boots {
				b.Close()
			}
			c.kill()
			return childConns{}, err
		}
		boots = append(boots, nc.(*net.UnixConn))
	}
	pid := cmd.Process.Pid
	conn, err := receiveChildConn(ctx, boots[0], pid, c.exited)
	boots[0].Close()
	if err != nil {
		if n == 2 {
			boots[1].Close()
		}
		c.kill()
		return childConns{}, err
	}
	conns := childConns{serve: conn, peer: conn.peer}
	if n == 2 {
		ep := Endpoint{Transport: Inherited, Address: fmt.Sprintf("child pid %d", pid)}
		conns.calls = newLazyListener(ep, func(stop <-chan struct{}) (net.Conn, error) {
			defer boots[1].Close()
			return receiveChildConn(context.Background(), boots[1], pid, stop)
		})
	}
	return conns, nil
}

// socketPair makes a Unix stream socket pair, close-on-exec (set under
// ForkLock, as the os package does, so no child started meanwhile
// inherits it).
func socketPair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return fds, os.NewSyscallError("socketpair", err)
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	return fds, nil
}

// receiveChildConn waits on boot for the connection the child sends, until
// ctx ends or stop closes, and checks that the child process pid made it.
func receiveChildConn(ctx context.Context, boot *net.UnixConn, pid int, stop <-chan struct{}) (*inheritedConn, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		case <-done:
			return
		}
		boot.SetReadDeadline(time.Unix(1, 0)) // wakes the read below
	}()
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := boot.ReadMsgUnix(b[:], oob)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("waiting for the child (pid %d) to call grpcipc.ChildListener: %w", pid, ctx.Err())
		case isClosed(stop):
			return nil, fmt.Errorf("the child (pid %d) exited or was closed before it connected", pid)
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the child (pid %d) exited, or closed its inherited descriptor, before it called grpcipc.ChildListener", pid)
		}
		return nil, fmt.Errorf("waiting for the child (pid %d) to connect: %w", pid, err)
	}
	fds, err := receivedFDs(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("the child (pid %d) sent no connection: %w", pid, err)
	}
	conn, err := fileConn(fds[0])
	if err != nil {
		return nil, fmt.Errorf("what the child (pid %d) sent: %w", pid, err)
	}
	peer, err := readPeerCreds(conn, true, nil)
	if err == nil {
		if p, ok := peer.PID(); ok && p != pid {
			err = fmt.Errorf("the connection was made by %s, not by the child the parent started (pid %d)", peer, pid)
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &inheritedConn{Conn: conn, peer: peer}, nil
}

// receivedFDs takes the descriptors of an SCM_RIGHTS message: exactly one
// is expected; any others are closed.
func receivedFDs(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("%d descriptors; want one", len(fds))
	}
	return fds, nil
}

// fileConn makes a net.Conn of a connected Unix stream socket fd, which
// it takes over (and closes on failure).
func fileConn(fd int) (net.Conn, error) {
	if err := checkStreamSocket(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "grpcipc-inherited")
	nc, err := net.FileConn(f) // a duplicate, close-on-exec
	f.Close()
	if err != nil {
		return nil, err
	}
	tuneSocket(nc)
	return nc, nil
}

// checkStreamSocket checks that fd is a Unix stream socket that is not
// listening; inherited, that it did not come from this process's own
// making (close-on-exec, as everything the Go runtime opens is) but
// through exec.
func checkStreamSocket(fd int, inherited bool) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		return fmt.Errorf("descriptor %d is not open", fd)
	}
	if inherited && flags&unix.FD_CLOEXEC != 0 {
		return fmt.Errorf("descriptor %d was not inherited (it is close-on-exec: this process opened it)", fd)
	}
	if sa, err := unix.Getsockname(fd); err != nil {
		return fmt.Errorf("descriptor %d is not a socket", fd)
	} else if _, ok := sa.(*unix.SockaddrUnix); !ok {
		return fmt.Errorf("descriptor %d is not a Unix socket", fd)
	}
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return fmt.Errorf("descriptor %d is not a stream socket", fd)
	}
	if listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || listening != 0 {
		return fmt.Errorf("descriptor %d is a listening socket, not a connection", fd)
	}
	return nil
}

// claimInherited checks each descriptor childEnv names before anything
// takes it, and makes it close-on-exec, so that the child's own children
// never inherit it (whether or not the child goes on to use it). A
// descriptor that fails the check is left alone: it is not ours.
func claimInherited(spec []string) []error {
	errs := make([]error, len(spec))
	for i, s := range spec {
		fd, err := inheritedFD(s)
		if err == nil {
			err = checkStreamSocket(fd, true)
		}
		if err != nil {
			errs[i] = fmt.Errorf("grpcipc: %s: %w", childEnv, err)
			continue
		}
		unix.CloseOnExec(fd)
	}
	return errs
}

func inheritedFD(spec string) (int, error) {
	s, ok := strings.CutPrefix(spec, "fd:")
	fd, err := strconv.Atoi(s)
	if !ok || err != nil || fd < 3 || fd > 1<<20 {
		return 0, fmt.Errorf("%q is not an inherited descriptor (fd:N, N from 3)", spec)
	}
	return fd, nil
}

// openInherited takes the inherited socket pair spec names (checked by
// claimInherited), reads the parent's identity from it, makes the real
// connection and sends the parent its other end.
func openInherited(spec string) (net.Conn, error) {
	fd, err := inheritedFD(spec)
	if err != nil {
		return nil, err
	}
	boot, err := fileConn(fd)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: inherited descriptor %d: %w", fd, err)
	}
	defer boot.Close()
	// The kernel's record of the inherited pair names its creator: the
	// parent, which must still be this process's parent.
	peer, err := readPeerCreds(boot, true, nil)
	if err == nil {
		err = checkParent(peer)
	}
	if err != nil {
		return nil, fmt.Errorf("grpcipc: inherited descriptor %d: %w", fd, err)
	}
	pair, err := socketPair()
	if err != nil {
		return nil, err
	}
	_, _, err = boot.(*net.UnixConn).WriteMsgUnix([]byte{0}, unix.UnixRights(pair[1]), nil)
	unix.Close(pair[1])
	if err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("grpcipc: sending the parent its connection: %w", err)
	}
	conn, err := fileConn(pair[0])
	if err != nil {
		return nil, err
	}
	return &inheritedConn{Conn: conn, peer: peer}, nil
}

// terminate asks the child to stop.
func terminate(p *os.Process) {
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.Kill()
	}
}

// envWithout is env without the variable name.
func envWithout(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
