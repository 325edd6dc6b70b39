//go:build unix

package fastio

import (
	"errors"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// msgWriter is a connection that can attach descriptors to what it
// writes: a Unix socket (*net.UnixConn, and what embeds one).
type msgWriter interface {
	WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error)
}

// CanCarryFiles says whether c can send descriptors.
func CanCarryFiles(c net.Conn) bool {
	_, ok := c.(msgWriter)
	return ok
}

// DupFiles returns close-on-exec duplicates of files' descriptors, which
// the caller owns.
func DupFiles(files []*os.File) ([]int, error) {
	fds := make([]int, 0, len(files))
	for _, f := range files {
		if f == nil {
			closeFDs(fds)
			return nil, errors.New("a nil *os.File")
		}
		sc, err := f.SyscallConn()
		if err != nil {
			closeFDs(fds)
			return nil, err
		}
		var dup int
		var derr error
		if err := sc.Control(func(fd uintptr) {
			dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		}); err != nil {
			closeFDs(fds)
			return nil, err
		}
		if derr != nil {
			closeFDs(fds)
			return nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", derr)
		}
		fds = append(fds, dup)
	}
	return fds, nil
}

// sendFiles writes b with fds attached, in one sendmsg.
func sendFiles(c net.Conn, b []byte, fds []int) (int, error) {
	mw, ok := c.(msgWriter)
	if !ok {
		return 0, errors.New("grpcipc: this connection cannot carry descriptors")
	}
	n, _, err := mw.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	return n, err
}

// closeFDs closes descriptors this process owns.
func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
