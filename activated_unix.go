//go:build unix

package grpcipc

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// checkActivatedFDs checks, before go-systemd takes them, that the
// descriptors LISTEN_FDS names for this process were handed over through
// exec (not close-on-exec, as all the Go runtime opens is) and are open:
// a wrong count must not make this process close descriptors of its own.
func checkActivatedFDs() error {
	if pid, err := strconv.Atoi(os.Getenv("LISTEN_PID")); err != nil || pid != os.Getpid() {
		return nil // not ours: go-systemd finds nothing
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil
	}
	if n > 1024 {
		return fmt.Errorf("grpcipc: LISTEN_FDS=%d: more sockets than systemd hands over", n)
	}
	for fd := 3; fd < 3+n; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			return fmt.Errorf("grpcipc: LISTEN_FDS=%d, but descriptor %d is not open", n, fd)
		}
		if flags&unix.FD_CLOEXEC != 0 {
			return fmt.Errorf("grpcipc: LISTEN_FDS=%d, but descriptor %d was not handed over (it is close-on-exec: this process opened it)", n, fd)
		}
	}
	return nil
}

// isListening reports whether the socket f is listening (SO_ACCEPTCONN).
func isListening(f *os.File) bool {
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
