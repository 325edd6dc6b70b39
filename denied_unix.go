//go:build unix

package grpcipc

import (
	"fmt"
	"os"
	"syscall"
)

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
