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

// IsPeerClosed: a write failed because the other end closed: a reset
// AF_UNIX socket, or a named pipe whose other end closed.
func IsPeerClosed(err error) bool {
	return errors.Is(err, windows.WSAECONNRESET) || errors.Is(err, windows.WSAECONNABORTED) ||
		errors.Is(err, windows.ERROR_BROKEN_PIPE) || errors.Is(err, windows.ERROR_NO_DATA) ||
		errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED)
}
