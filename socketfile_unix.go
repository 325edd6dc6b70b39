//go:build unix

package grpcipc

import (
	"errors"

	"golang.org/x/sys/unix"
)

// isConnRefused: nothing accepts on the socket.
func isConnRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }

// isBusy: the socket's accept queue is full.
func isBusy(err error) bool { return errors.Is(err, unix.EAGAIN) }
