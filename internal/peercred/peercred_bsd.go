//go:build darwin || freebsd

package peercred

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Read reads LOCAL_PEERCRED: the peer's effective uid and its groups, the
// first of which is its effective gid, as recorded when it connected. The
// executable is not known here.
func Read(conn net.Conn, _ bool, _ Want) (*Info, error) {
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
	c := &Info{UID: int(xu.Uid), HasUID: true, PID: pid, HasPID: hasPID,
		ExeErr: errors.New("the executable of a peer is known on Linux and Windows only")}
	n := int(xu.Ngroups)
	if n > len(xu.Groups) {
		n = len(xu.Groups)
	}
	if n > 0 {
		c.GID = int(xu.Groups[0])
		c.Groups = make([]int, 0, n)
		for _, g := range xu.Groups[:n] {
			c.Groups = append(c.Groups, int(g))
		}
		c.HasGroups = true
	}
	return c, nil
}
