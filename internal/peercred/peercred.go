// Package peercred reads the OS identity of the process at the other end of
// a local connection, once, when the connection is made: one file per OS,
// each defining Read.
//
// Everything read is a plain value: nothing is looked up later by PID, so
// nothing read here can change after Read returns (a process that execs or
// exits afterwards changes nothing), and no descriptor is held.
package peercred

import "io/fs"

// Info is what the OS told of the peer. Each Has field says whether the
// OS supplied the fields it guards; a field it did not supply is never
// guessed.
type Info struct {
	PID    int
	HasPID bool

	UID, GID int // effective ids at connect time (Unix)
	HasUID   bool

	// Groups are the supplementary group IDs (Unix).
	Groups    []int
	HasGroups bool

	SID          string   // the user's security identifier (Windows)
	GroupSIDs    []string // the enabled groups of the process token (Windows)
	HasGroupSIDs bool

	// Exe is the peer's executable as read when the connection was
	// accepted, or nil when it could not be read (another user's process
	// without root, no pidfd to pin the process, a process in another
	// mount namespace).
	Exe *Executable
	// ExeErr says why Exe is nil.
	ExeErr error

	// Cgroup is the peer's cgroup v2 path (Linux: "/system.slice/x.service",
	// relative to this process's cgroup namespace) as read when the
	// connection was accepted; "" when it was not read, and CgroupErr says
	// why.
	Cgroup    string
	CgroupErr error

	// Label is the peer socket's security context as the Linux security
	// module recorded it (SO_PEERSEC: SELinux's context, AppArmor's
	// profile and mode); "" when none was read, and LabelErr says why.
	Label    string
	LabelErr error
}

// Want says which parts of an identity that cost more than the socket's
// own record to read, given what was read first (ids and groups): a nil
// function reads none of that part.
type Want struct {
	Exe    func(*Info) bool // the executable
	Cgroup func(*Info) bool // the cgroup v2 path (Linux)
	Label  func(*Info) bool // the security module's label (Linux)
}

// Executable is the peer's executable: its path as the OS names it, and
// the file itself, to compare by identity (device and inode, or volume and
// file index), not by name.
type Executable struct {
	Path string
	id   fileID // of the very file the process runs, not of Path
}

// NewExecutable describes an executable at path whose file fi is, for
// tests and for callers that stat it themselves.
func NewExecutable(path string, fi fs.FileInfo) *Executable {
	return &Executable{Path: path, id: fileIDOf(fi)}
}

// IsFile reports whether the executable is the file fi describes.
func (e *Executable) IsFile(fi fs.FileInfo) bool {
	return e != nil && fi != nil && e.id.valid() && e.id.same(fileIDOf(fi))
}
