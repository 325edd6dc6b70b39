//go:build unix

package grpcipc

import (
	"errors"

	"golang.org/x/sys/unix"
)

// isPeerClosedErrno: a write failed because the other end closed.
func isPeerClosedErrno(err error) bool {
	return errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET)
}
