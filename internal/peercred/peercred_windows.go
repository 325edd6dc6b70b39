package peercred

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// sioAFUnixGetPeerPID is SIO_AF_UNIX_GETPEERPID from afunix.h,
// _WSAIOR(IOC_VENDOR, 256): the PID of an AF_UNIX socket's peer.
const sioAFUnixGetPeerPID = 0x58000100

// Read reads the identity of the process at the other end: its
// PID from GetNamedPipeClientProcessId (a pipe's server) or
// GetNamedPipeServerProcessId (its client), or SIO_AF_UNIX_GETPEERPID (an
// AF_UNIX socket); then, through a handle to that process opened first, its
// token's user and group SIDs and its executable. A process created after
// the connection was accepted is not the one that connected (its PID was
// reused), and is refused.
//
// The executable is compared by file identity (volume and file index) with
// the one a policy names; it is read when Read runs.
func Read(conn net.Conn, server bool, _ Want) (*Info, error) {
	accepted := time.Now()
	pid, err := peerPID(conn, server)
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	return processCreds(pid, accepted)
}

func peerPID(conn net.Conn, server bool) (uint32, error) {
	var pid uint32
	if fc, ok := conn.(interface{ Fd() uintptr }); ok { // a go-winio pipe
		h := windows.Handle(fc.Fd())
		var err error
		if server {
			err = windows.GetNamedPipeClientProcessId(h, &pid)
		} else {
			err = windows.GetNamedPipeServerProcessId(h, &pid)
		}
		return pid, err
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("%T is neither a named pipe nor a socket", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ioErr error
	if err := raw.Control(func(fd uintptr) {
		var n uint32
		ioErr = windows.WSAIoctl(windows.Handle(fd), sioAFUnixGetPeerPID, nil, 0,
			(*byte)(unsafe.Pointer(&pid)), uint32(unsafe.Sizeof(pid)), &n, nil, 0)
	}); err != nil {
		return 0, err
	}
	if ioErr != nil {
		return 0, fmt.Errorf("SIO_AF_UNIX_GETPEERPID: %w", ioErr)
	}
	return pid, nil
}

func processCreds(pid uint32, accepted time.Time) (*Info, error) {
	proc, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return nil, fmt.Errorf("peer credentials: opening pid %d: %w", pid, err)
	}
	defer windows.CloseHandle(proc)
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(proc, &created, &exited, &kernel, &user); err != nil {
		return nil, fmt.Errorf("peer credentials: pid %d: %w", pid, err)
	}
	if time.Unix(0, created.Nanoseconds()).After(accepted) {
		return nil, errors.New("peer credentials: the peer's pid was reused by a process created after the connection")
	}
	var tok windows.Token
	if err := windows.OpenProcessToken(proc, windows.TOKEN_QUERY, &tok); err != nil {
		return nil, fmt.Errorf("peer credentials: token of pid %d: %w", pid, err)
	}
	defer tok.Close()
	tu, err := tok.GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: token user of pid %d: %w", pid, err)
	}
	c := &Info{PID: int(pid), HasPID: true, SID: tu.User.Sid.String()}
	if tg, err := tok.GetTokenGroups(); err == nil {
		c.GroupSIDs = []string{}
		for _, g := range tg.AllGroups() {
			if g.Attributes&windows.SE_GROUP_ENABLED != 0 && g.Attributes&windows.SE_GROUP_LOGON_ID != windows.SE_GROUP_LOGON_ID {
				c.GroupSIDs = append(c.GroupSIDs, g.Sid.String())
			}
		}
		c.HasGroupSIDs = true
	}
	buf := make([]uint16, windows.MAX_LONG_PATH)
	size := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(proc, 0, &buf[0], &size); err != nil {
		c.ExeErr = fmt.Errorf("reading the executable of pid %d: %w", pid, err)
		return c, nil
	}
	exe := windows.UTF16ToString(buf[:size])
	fi, err := os.Stat(exe)
	if err != nil {
		c.ExeErr = fmt.Errorf("reading the executable of pid %d: %w", pid, err)
		return c, nil
	}
	c.Exe = NewExecutable(exe, fi)
	return c, nil
}
