//go:build unix

package inherit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/grpcipc/grpcipc/internal/rights"
	"golang.org/x/sys/unix"
)

// ErrPeerClosed is wrapped by ReceiveConn's error when the other end
// closed before it sent a connection (it exited, or gave up its end).
var ErrPeerClosed = errors.New("closed before it sent a connection")

// SocketPair makes a Unix stream socket pair, close-on-exec (set under
// ForkLock, as the os package does, so that no process started meanwhile
// inherits it).
func SocketPair() ([2]int, error) {
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

// ParseFD reads "fd:N", an inherited descriptor's name.
func ParseFD(spec string) (int, error) {
	s, ok := strings.CutPrefix(spec, "fd:")
	fd, err := strconv.Atoi(s)
	if !ok || err != nil || fd < 3 || fd > 1<<20 {
		return 0, fmt.Errorf("%q is not an inherited descriptor (fd:N, N from 3)", spec)
	}
	return fd, nil
}

// Claim checks that fd came through exec (it is not close-on-exec, as
// everything the Go runtime opens is) and is a connected Unix stream
// socket, then makes it close-on-exec, so that this process's own
// children do not inherit it. A descriptor that fails the check is left
// as it is: it is not the caller's.
func Claim(fd int) error {
	if err := CheckStreamSocket(fd, true); err != nil {
		return err
	}
	unix.CloseOnExec(fd)
	return nil
}

// CheckStreamSocket checks that fd is a Unix stream socket that is not
// listening; inherited, also that it is not close-on-exec.
func CheckStreamSocket(fd int, inherited bool) error {
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

// FileConn makes a net.Conn of the connected Unix stream socket fd, which
// it takes over (and closes on failure).
func FileConn(fd int) (net.Conn, error) {
	if err := CheckStreamSocket(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "grpcipc-inherited")
	nc, err := net.FileConn(f) // a duplicate, close-on-exec
	f.Close()
	return nc, err
}

// SendProof sends over c one end of a socket pair made here, and closes
// both: the kernel records the pair's creator, so the process at the other
// end of c learns from it who this process is, as of now (SCM_RIGHTS, with
// one byte).
func SendProof(c *net.UnixConn) error {
	pair, err := SocketPair()
	if err != nil {
		return err
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	_, _, err = c.WriteMsgUnix([]byte{0}, unix.UnixRights(pair[1]), nil)
	return err
}

// ReceiveProof waits on c for the descriptor SendProof sends, until ctx
// ends or stop closes, and returns it (close-on-exec; the caller closes
// it). It is never read, written or polled: the sender may hold its open
// file description too. CheckProof says whether it is one.
func ReceiveProof(ctx context.Context, c *net.UnixConn, stop <-chan struct{}) (int, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		case <-done:
			return
		}
		c.SetReadDeadline(time.Unix(1, 0)) // wakes the read below
	}()
	var b [1]byte
	oob := make([]byte, rights.Space) // room for all a message can carry: none is closed inside the read
	n, oobn, _, _, err := c.ReadMsgUnix(b[:], oob)
	switch {
	case err != nil && ctx.Err() != nil:
		return -1, ctx.Err()
	case err != nil && Closed(stop):
		return -1, ErrPeerClosed
	case errors.Is(err, io.EOF) || err == nil && n == 0 && oobn == 0:
		return -1, ErrPeerClosed
	case err != nil:
		return -1, err
	}
	fds, err := takeOne(oob[:oobn])
	if err != nil {
		return -1, err
	}
	return fds[0], nil
}

// CheckProof checks that fd is a connected Unix stream socket, as one end
// of a socket pair is.
func CheckProof(fd int) error {
	if err := CheckStreamSocket(fd, false); err != nil {
		return err
	}
	if _, err := unix.Getpeername(fd); err != nil {
		return fmt.Errorf("descriptor %d is not connected", fd)
	}
	return nil
}

// takeOne takes the descriptors of an SCM_RIGHTS message: exactly one is
// expected; any others are discarded.
func takeOne(oob []byte) ([]int, error) {
	fds := rights.Received(oob)
	if len(fds) != 1 {
		rights.Discard(fds...)
		return nil, fmt.Errorf("%d descriptors sent; want one", len(fds))
	}
	return fds, nil
}

// CheckActivatedFDs checks, before anything takes them, that the
// descriptors LISTEN_FDS names for this process (LISTEN_PID) were handed
// over through exec (not close-on-exec) and are open: a wrong count must
// not make this process close descriptors of its own.
func CheckActivatedFDs() error {
	if pid, err := strconv.Atoi(os.Getenv("LISTEN_PID")); err != nil || pid != os.Getpid() {
		return nil // not this process's: there is nothing to take
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil
	}
	if n > 1024 {
		return fmt.Errorf("LISTEN_FDS=%d: more sockets than systemd hands over", n)
	}
	for fd := 3; fd < 3+n; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			return fmt.Errorf("LISTEN_FDS=%d, but descriptor %d is not open", n, fd)
		}
		if flags&unix.FD_CLOEXEC != 0 {
			return fmt.Errorf("LISTEN_FDS=%d, but descriptor %d was not handed over (it is close-on-exec: this process opened it)", n, fd)
		}
	}
	return nil
}

// IsListening reports whether the socket f is listening (SO_ACCEPTCONN).
func IsListening(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	listening := false
	rc.Control(func(fd uintptr) {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		listening = err == nil && v != 0
	})
	return listening
}
