package grpcipc

import (
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"sync"
)

// Creds is the OS identity of the process at the other end of a local
// connection, as the OS reported it when the connection was made. Each
// accessor says whether the OS supplied that field: a field it did not
// supply is never guessed.
//
// Linux: PID, UID and GID come from SO_PEERCRED (socket(7): the effective
// ids of the process that called connect, at that time). The supplementary
// groups and the executable are read from /proc through a pidfd of the peer
// from SO_PEERPIDFD (kernel 6.5 and later), and kept only if that same
// process is still alive afterwards, so a recycled PID cannot lend another
// process's identity; without SO_PEERPIDFD they are not known. Reading
// another user's executable needs root (ptrace access).
//
// macOS and FreeBSD: UID and groups from LOCAL_PEERCRED (the first group is
// the effective GID), PID from LOCAL_PEERPID on macOS. Not run in CI.
//
// Windows: PID, user SID and group SIDs, for named pipes (coming with the
// named-pipe transport).
type Creds struct {
	pid    int
	hasPID bool
	uid    int
	gid    int
	hasUID bool // uid and gid
	sid    string

	// groups and exe are read on first use, through the pinned process.
	pinned     pinnedProcess
	groupsOnce sync.Once
	groups     []int
	groupSIDs  []string
	hasGroups  bool
	exeOnce    sync.Once
	exe        string
	userOnce   sync.Once
	username   string
}

// PID returns the peer's process ID.
func (c *Creds) PID() (int, bool) { return c.pid, c.hasPID }

// UID returns the peer's effective user ID (Unix).
func (c *Creds) UID() (int, bool) { return c.uid, c.hasUID }

// GID returns the peer's effective group ID (Unix).
func (c *Creds) GID() (int, bool) { return c.gid, c.hasUID }

// Groups returns the peer's supplementary group IDs (Unix).
func (c *Creds) Groups() ([]int, bool) {
	c.loadGroups()
	return c.groups, c.hasGroups && c.groupSIDs == nil
}

// SID returns the peer's user security identifier (Windows).
func (c *Creds) SID() (string, bool) { return c.sid, c.sid != "" }

// GroupSIDs returns the security identifiers of the peer's groups (Windows).
func (c *Creds) GroupSIDs() ([]string, bool) {
	c.loadGroups()
	return c.groupSIDs, c.groupSIDs != nil
}

// Executable returns the path of the peer process's executable, read
// through the pinned process (see [Creds]).
func (c *Creds) Executable() (string, bool) {
	c.exeOnce.Do(func() { c.exe = c.pinned.executable() })
	return c.exe, c.exe != ""
}

// Username returns the name of the peer's user, looked up from its UID
// (Unix) or SID (Windows).
func (c *Creds) Username() (string, bool) {
	c.userOnce.Do(func() {
		var u *user.User
		var err error
		switch {
		case c.hasUID:
			u, err = user.LookupId(strconv.Itoa(c.uid))
		case c.sid != "":
			u, err = user.LookupId(c.sid)
		default:
			return
		}
		if err == nil {
			c.username = u.Username
		}
	})
	return c.username, c.username != ""
}

func (c *Creds) loadGroups() {
	c.groupsOnce.Do(func() {
		if c.hasGroups {
			return // supplied with the connection (macOS, FreeBSD, Windows)
		}
		c.groups, c.hasGroups = c.pinned.groups()
	})
}

// String describes the identity for logs and error messages, for example
// "pid 4242 uid 1000 (alice) gid 1000".
func (c *Creds) String() string {
	if c == nil {
		return "unknown peer"
	}
	var b strings.Builder
	if c.hasPID {
		fmt.Fprintf(&b, "pid %d ", c.pid)
	}
	name, hasName := c.Username()
	switch {
	case c.hasUID:
		fmt.Fprintf(&b, "uid %d ", c.uid)
		if hasName {
			fmt.Fprintf(&b, "(%s) ", name)
		}
		fmt.Fprintf(&b, "gid %d ", c.gid)
	case c.sid != "":
		fmt.Fprintf(&b, "sid %s ", c.sid)
		if hasName {
			fmt.Fprintf(&b, "(%s) ", name)
		}
	}
	if b.Len() == 0 {
		return "peer of unknown identity"
	}
	return strings.TrimSuffix(b.String(), " ")
}

// release frees what the credentials hold (a pidfd on Linux).
func (c *Creds) release() {
	if c != nil {
		c.pinned.release()
	}
}
