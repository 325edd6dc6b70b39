//go:build unix

package grpcipc

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/grpcipc/grpcipc/internal/peercred"
	"github.com/grpcipc/grpcipc/internal/sockfile"
)

// checkSocketPath checks, before connecting, that the socket file belongs
// to an expected user and that no directory above it lets another user
// swap it: each must be unwritable by group and others, or sticky and owned
// by root or an expected user.
func checkSocketPath(ep Endpoint, expect []Principal, self identity) error {
	mismatch := func(actual string) error {
		return &ServerIdentityError{Endpoint: ep.String(), Expected: principalTexts(expect), Actual: actual}
	}
	owner := func(fi fs.FileInfo) *Creds {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		// A file's owner has no executable, cgroup or label: exe: and
		// workload principals are checked against the server process
		// once connected (checkServer).
		return &Creds{info: peercred.Info{UID: int(st.Uid), GID: int(st.Gid), HasUID: true}, assumeExe: true, assumeWorkload: true}
	}
	expected := func(c *Creds) bool {
		for _, p := range expect {
			if p.matches(c, self) {
				return true
			}
		}
		return false
	}
	path, err := filepath.Abs(ep.Address)
	if err != nil {
		return fmt.Errorf("server check: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("server check: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return mismatch(fmt.Sprintf("%s is a %s, not a socket", path, sockfile.FileKind(fi.Mode())))
	}
	if o := owner(fi); o == nil {
		return mismatch(fmt.Sprintf("the owner of the socket file %s is unknown", path))
	} else if !expected(o) {
		return mismatch(fmt.Sprintf("the socket file %s is owned by uid %d", path, o.info.UID))
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("server check: %w", err)
		}
		o := owner(fi)
		if o == nil {
			return mismatch(fmt.Sprintf("the owner of %s is unknown", dir))
		}
		perm := fi.Mode()
		if perm&0o022 != 0 {
			if perm&fs.ModeSticky == 0 {
				return mismatch(fmt.Sprintf("directory %s is writable by others (mode %04o), so the socket could have been replaced", dir, perm.Perm()))
			}
			if o.info.UID != 0 && !expected(o) {
				return mismatch(fmt.Sprintf("sticky directory %s (mode %04o) is owned by uid %d", dir, perm.Perm(), o.info.UID))
			}
		}
		if o.info.UID != 0 && !expected(o) && o.info.UID != self.uid {
			return mismatch(fmt.Sprintf("directory %s is owned by uid %d, who could replace the socket", dir, o.info.UID))
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}
