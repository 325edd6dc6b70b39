//go:build unix

package grpcipc

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// isConnRefused: nothing accepts on the socket.
func isConnRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }

// isBusy: the socket's accept queue is full.
func isBusy(err error) bool { return errors.Is(err, unix.EAGAIN) }

// isAccessDenied: the socket file's permissions refuse this user.
func isAccessDenied(err error) bool { return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) }

// describeAccess names the socket file's owner and mode.
func describeAccess(ep Endpoint) string {
	fi, err := os.Stat(ep.Address)
	if err != nil {
		return "the socket file"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("the socket file (mode %04o, owner uid %d, group %d)", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	return fmt.Sprintf("the socket file (mode %04o)", fi.Mode().Perm())
}

// describeSelf names this process's user.
func describeSelf() string { return fmt.Sprintf("uid %d", os.Geteuid()) }
