//go:build unix

package sockfile

import (
	"errors"

	"golang.org/x/sys/unix"
)

// IsConnRefused: nothing accepts on the socket.
func IsConnRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }

// IsBusy: the socket's accept queue is full.
func IsBusy(err error) bool { return errors.Is(err, unix.EAGAIN) }

// IsAccessDenied: the socket file's permissions refuse this user.
func IsAccessDenied(err error) bool { return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) }

// IsPeerClosed: a write failed because the other end closed.
func IsPeerClosed(err error) bool {
	return errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET)
}
