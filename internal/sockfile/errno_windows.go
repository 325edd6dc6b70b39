package sockfile

import (
	"errors"

	"golang.org/x/sys/windows"
)

// IsConnRefused: nothing accepts on the socket.
func IsConnRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }

// IsBusy: the socket's accept queue is full.
func IsBusy(err error) bool { return errors.Is(err, windows.WSAEWOULDBLOCK) }

// IsAccessDenied: the pipe's (or the socket directory's) DACL refuses this
// user.
func IsAccessDenied(err error) bool {
	return errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.WSAEACCES)
}
