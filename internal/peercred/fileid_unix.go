//go:build unix

package peercred

import (
	"io/fs"
	"syscall"
)

// fileID is a file's device and inode.
type fileID struct {
	dev, ino uint64
	ok       bool
}

func (f fileID) valid() bool { return f.ok }

func fileIDOf(fi fs.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino), ok: true}
}

func (f fileID) same(g fileID) bool { return f.ok && g.ok && f.dev == g.dev && f.ino == g.ino }
