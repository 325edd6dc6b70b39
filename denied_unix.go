//go:build unix

package grpcipc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// describeAccess names what refused this user: the first directory on
// the way to the socket that it may not search, or else the socket file,
// with its mode and owner.
func describeAccess(ep Endpoint) string {
	path := filepath.Clean(ep.Address)
	// Walk down from the root: a directory refuses when an entry in it
	// cannot be looked at.
	var dirs []string
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		next := path
		if i > 0 {
			next = dirs[i-1]
		}
		if _, err := os.Lstat(next); errors.Is(err, fs.ErrPermission) {
			what := "the socket's directory"
			if i > 0 {
				what = "a directory above the socket"
			}
			return describeFile(what+" "+dirs[i], dirs[i])
		}
	}
	return describeFile("the socket file", path)
}

// describeFile names what at path with its mode, owner and group.
func describeFile(what, path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return what
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%s (mode %04o, owner uid %d, group %d)", what, fi.Mode().Perm(), st.Uid, st.Gid)
	}
	return fmt.Sprintf("%s (mode %04o)", what, fi.Mode().Perm())
}

// describeSelf names this process's user.
func describeSelf() string { return fmt.Sprintf("uid %d", os.Geteuid()) }
