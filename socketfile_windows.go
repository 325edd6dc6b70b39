package grpcipc

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isConnRefused: nothing accepts on the socket.
func isConnRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }

// isBusy: the socket's accept queue is full.
func isBusy(err error) bool { return errors.Is(err, windows.WSAEWOULDBLOCK) }

// isAccessDenied: the pipe's (or the socket directory's) DACL refuses this
// user.
func isAccessDenied(err error) bool {
	return errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.WSAEACCES)
}

// describeAccess names what refused.
func describeAccess(ep Endpoint) string {
	if ep.Transport == NamedPipe {
		return "the named pipe's DACL"
	}
	return "the socket's directory DACL"
}

// describeSelf names this process's user.
func describeSelf() string {
	if id, err := selfIdentity(); err == nil {
		return "sid " + id.sid
	}
	return "this user"
}
