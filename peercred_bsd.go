//go:build darwin || freebsd

package grpcipc

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// readPeerCreds reads LOCAL_PEERCRED: the peer's effective uid and its
// groups, the first of which is its effective gid.
func readPeerCreds(conn net.Conn, _ bool) (*Creds, error) {
	var (
		xu      *unix.Xucred
		pid     int
		hasPID  bool
		credErr error
	)
	if err := withFD(conn, func(fd int) {
		xu, credErr = unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		pid, hasPID = peerPID(fd)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", os.NewSyscallError("getsockopt LOCAL_PEERCRED", credErr))
	}
	c := &Creds{uid: int(xu.Uid), hasUID: true, pid: pid, hasPID: hasPID}
	n := int(xu.Ngroups)
	if n > len(xu.Groups) {
		n = len(xu.Groups)
	}
	if n > 0 {
		c.gid = int(xu.Groups[0])
		c.groups = make([]int, 0, n)
		for _, g := range xu.Groups[:n] {
			c.groups = append(c.groups, int(g))
		}
		c.hasGroups = true
	}
	return c, nil
}
