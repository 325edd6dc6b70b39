package inherit

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Exited reports whether this process's child pid has exited: it is a
// zombie, not yet reaped (waitid with WNOWAIT, which leaves it for the
// goroutine that waits for it), or it is reaped already.
func Exited(pid int) bool {
	var info unix.Siginfo // zeroed: with WNOHANG and nothing to report, it stays so
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	if errors.Is(err, unix.ECHILD) {
		return true
	}
	return err == nil && info.Signo == int32(unix.SIGCHLD)
}
