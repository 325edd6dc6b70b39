//go:build unix

package grpcipc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
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
		return fmt.Sprintf("%s (mode %04o, owner %s, group %s)", what, fi.Mode().Perm(), uidName(int(st.Uid)), gidName(int(st.Gid)))
	}
	return fmt.Sprintf("%s (mode %04o)", what, fi.Mode().Perm())
}

// describeSelf names this process's user.
func describeSelf() string { return uidName(os.Geteuid()) }

// uidName is "uid N (name)", or "uid N" for a uid with no user.
func uidName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// gidName is "N (name)", or "N" for a gid with no group.
func gidName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil && g.Name != "" {
		return fmt.Sprintf("%d (%s)", gid, g.Name)
	}
	return strconv.Itoa(gid)
}
