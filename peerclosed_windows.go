package grpcipc

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isPeerClosedErrno: a write failed because the other end closed: a reset
// AF_UNIX socket, or a named pipe whose server end closed.
func isPeerClosedErrno(err error) bool {
	return errors.Is(err, windows.WSAECONNRESET) || errors.Is(err, windows.WSAECONNABORTED) ||
		errors.Is(err, windows.ERROR_BROKEN_PIPE) || errors.Is(err, windows.ERROR_NO_DATA) ||
		errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED)
}
