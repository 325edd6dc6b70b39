package inherit

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// CreatorAlive checks, through a pidfd of the process that made the socket
// fd (SO_PEERPIDFD, Linux 6.5), that this very process is still alive: a
// PID compared alone could be a reused one. On an older kernel it checks
// nothing.
func CreatorAlive(fd int) error {
	pidfd, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("no pidfd of the process that made the connection: %w", err)
	}
	defer unix.Close(pidfd)
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return errors.New("the process that made the connection has exited (its PID may have been reused)")
	}
	return nil
}
