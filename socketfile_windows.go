package grpcipc

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isConnRefused: nothing accepts on the socket.
func isConnRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }

// isBusy: the socket's accept queue is full.
func isBusy(err error) bool { return errors.Is(err, windows.WSAEWOULDBLOCK) }
