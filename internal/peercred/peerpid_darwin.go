package peercred

import "golang.org/x/sys/unix"

// peerPID reads LOCAL_PEERPID.
func peerPID(fd int) (int, bool) {
	pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	return pid, err == nil && pid > 0
}
