package grpcipc

import (
	"fmt"
	"net"
	"os/user"
	"strconv"
	"strings"
	"sync"

	"github.com/grpcipc/grpcipc/internal/peercred"
)

// Creds is the OS identity of the process that made a local connection
// (on the client: that accepted it), read once when the connection was
// accepted (or made) and never again: nothing is looked up later by PID.
// A descriptor handed to another process (SCM_RIGHTS, inheritance) carries
// this identity with it, as any Unix socket does. Each
// accessor says whether the OS supplied that field; a field it did not
// supply is never guessed, and a policy treats it as unknown (see
// [Policy]: a deny rule that needs it matches, an allow rule does not).
//
// Linux: PID, UID and GID from SO_PEERCRED and the supplementary groups
// from SO_PEERGROUPS, both recorded by the kernel when the peer called
// connect (socket(7): effective ids). The executable is read through a
// pidfd of the peer (SO_PEERPIDFD, Linux 6.5 and later) when the
// connection is accepted, and kept only if that same process was still
// alive after the read and runs in the server's mount namespace. Reading
// another user's executable needs root (ptrace access).
//
// macOS and FreeBSD: UID and groups from LOCAL_PEERCRED (the first group is
// the effective GID), PID from LOCAL_PEERPID on macOS; no executable. Not
// run in CI.
//
// Windows: PID, user SID, group SIDs and executable, through a handle to
// the peer process opened when the connection is accepted.
type Creds struct {
	info peercred.Info
	// assumeExe makes exe: principals match without reading the
	// executable: to tell whether reading it could admit the caller.
	assumeExe bool
	// assumeWorkload makes cgroup:, unit:, user-unit: and label:
	// principals match: for the owner of a socket file, a uid only, whose
	// server's workload identity is checked on the connection itself.
	assumeWorkload bool

	userOnce sync.Once
	username string
}

// readPeerCreds reads the identity of conn's peer; server says which end
// this is. wantExe, when not nil, says from what was read first whether to
// read the executable too (nil: always); cgroup, whether to read its
// cgroup (Linux: a policy or an expected server names cgroup:, unit: or
// user-unit: principals).
func readPeerCreds(conn net.Conn, server bool, wantExe func(*Creds) bool, cgroup bool) (*Creds, error) {
	for c := conn; c != nil; {
		if ic, ok := c.(*inheritedConn); ok {
			return ic.peer, nil // established when the connection was handed over
		}
		u, ok := c.(interface{ unwrap() net.Conn })
		if !ok {
			break
		}
		c = u.unwrap()
	}
	want := peercred.Want{Exe: func(*peercred.Info) bool { return true }}
	if wantExe != nil {
		want.Exe = func(i *peercred.Info) bool { return wantExe(&Creds{info: *i}) }
	}
	if cgroup {
		// The workload identity: the cgroup, and the label.
		want.Cgroup = func(*peercred.Info) bool { return true }
		want.Label = want.Cgroup
	}
	info, err := peercred.Read(conn, server, want)
	if err != nil {
		return nil, err
	}
	return &Creds{info: *info}, nil
}

// PID returns the peer's process ID.
func (c *Creds) PID() (int, bool) { return c.info.PID, c.info.HasPID }

// UID returns the peer's effective user ID (Unix).
func (c *Creds) UID() (int, bool) { return c.info.UID, c.info.HasUID }

// GID returns the peer's effective group ID (Unix).
func (c *Creds) GID() (int, bool) { return c.info.GID, c.info.HasUID }

// Groups returns the peer's supplementary group IDs (Unix).
func (c *Creds) Groups() ([]int, bool) { return c.info.Groups, c.info.HasGroups }

// Label returns the security context the Linux security module gave the
// caller's socket (SO_PEERSEC), read when it connected only when the
// server's policy names a label:, cgroup:, unit: or user-unit: principal.
func (c *Creds) Label() (string, bool) { return c.info.Label, c.info.Label != "" }

// Cgroup returns the caller's cgroup v2 path as read when it connected
// (Linux: "/system.slice/backup.service"). It is read only when the
// server's policy, or a client's expected server, names a cgroup:, unit:
// or user-unit: principal, and only if the process that connected was
// still alive once it was read (see [ParsePrincipal]).
func (c *Creds) Cgroup() (string, bool) { return c.info.Cgroup, c.info.Cgroup != "" }

// Unit returns the systemd system unit the caller ran in when it
// connected, from its cgroup (see [Creds.Cgroup]): a process of a user's
// own manager has that manager's unit, user@UID.service.
func (c *Creds) Unit() (string, bool) {
	system, _, _, _ := peercred.Units(c.info.Cgroup)
	return system, system != ""
}

// UserUnit returns the unit of its user's systemd manager that the caller
// ran in when it connected, if it ran in one (see [Creds.Cgroup]).
func (c *Creds) UserUnit() (string, bool) {
	_, user, _, ok := peercred.Units(c.info.Cgroup)
	return user, ok
}

// SID returns the peer's user security identifier (Windows).
func (c *Creds) SID() (string, bool) { return c.info.SID, c.info.SID != "" }

// GroupSIDs returns the security identifiers of the peer's groups (Windows).
func (c *Creds) GroupSIDs() ([]string, bool) { return c.info.GroupSIDs, c.info.HasGroupSIDs }

// Executable returns the path of the peer process's executable, as read
// when the connection was accepted (see [Creds]). The path is what the OS
// named; policies compare the file itself, by device and inode.
func (c *Creds) Executable() (string, bool) {
	if c.info.Exe == nil {
		return "", false
	}
	return c.info.Exe.Path, true
}

// Username returns the name of the peer's user, looked up from its UID
// (Unix) or SID (Windows).
func (c *Creds) Username() (string, bool) {
	c.userOnce.Do(func() {
		var u *user.User
		var err error
		switch {
		case c.info.HasUID:
			u, err = user.LookupId(strconv.Itoa(c.info.UID))
		case c.info.SID != "":
			u, err = user.LookupId(c.info.SID)
		default:
			return
		}
		if err == nil {
			c.username = u.Username
		}
	})
	return c.username, c.username != ""
}

// String describes the identity for logs and error messages, for example
// "pid 4242 uid 1000 (alice) gid 1000".
func (c *Creds) String() string {
	if c == nil {
		return "unknown peer"
	}
	var b strings.Builder
	if c.info.HasPID {
		fmt.Fprintf(&b, "pid %d ", c.info.PID)
	}
	name, hasName := c.Username()
	switch {
	case c.info.HasUID:
		fmt.Fprintf(&b, "uid %d ", c.info.UID)
		if hasName {
			fmt.Fprintf(&b, "(%s) ", name)
		}
		fmt.Fprintf(&b, "gid %d ", c.info.GID)
	case c.info.SID != "":
		fmt.Fprintf(&b, "sid %s ", c.info.SID)
		if hasName {
			fmt.Fprintf(&b, "(%s) ", name)
		}
	}
	if b.Len() == 0 {
		return "peer of unknown identity"
	}
	if c.info.Cgroup != "" {
		// Read only for a policy that names cgroups or units: the
		// refusals it logs say where the caller ran.
		fmt.Fprintf(&b, "cgroup %s ", c.info.Cgroup)
	}
	return strings.TrimSuffix(b.String(), " ")
}
