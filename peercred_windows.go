package grpcipc

import (
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/windows"
)

// readPeerCreds reads the identity of the process at the other end of a
// named pipe: its PID from GetNamedPipeClientProcessId (on the server) or
// GetNamedPipeServerProcessId (on the client), then, through a handle to
// that process opened first, its token's user and group SIDs and its
// executable. A process created after the connection was accepted is not
// the one that connected (its PID was reused), and is refused.
func readPeerCreds(conn net.Conn, server bool) (*Creds, error) {
	fc, ok := conn.(interface{ Fd() uintptr })
	if !ok {
		return nil, fmt.Errorf("peer credentials: %T is not a named pipe", conn)
	}
	accepted := time.Now()
	h := windows.Handle(fc.Fd())
	var pid uint32
	var err error
	if server {
		err = windows.GetNamedPipeClientProcessId(h, &pid)
	} else {
		err = windows.GetNamedPipeServerProcessId(h, &pid)
	}
	if err != nil {
		return nil, fmt.Errorf("peer credentials: process id: %w", err)
	}
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
		return nil, fmt.Errorf("peer credentials: pid %d was reused by a process created after the connection", pid)
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
	c := &Creds{pid: int(pid), hasPID: true, sid: tu.User.Sid.String()}
	if tg, err := tok.GetTokenGroups(); err == nil {
		c.groupSIDs = []string{}
		for _, g := range tg.AllGroups() {
			if g.Attributes&windows.SE_GROUP_ENABLED != 0 && g.Attributes&windows.SE_GROUP_LOGON_ID != windows.SE_GROUP_LOGON_ID {
				c.groupSIDs = append(c.groupSIDs, g.Sid.String())
			}
		}
		c.hasGroups = true
	}
	buf := make([]uint16, windows.MAX_LONG_PATH)
	size := uint32(len(buf))
	exe := ""
	if err := windows.QueryFullProcessImageName(proc, 0, &buf[0], &size); err == nil {
		exe = windows.UTF16ToString(buf[:size])
	}
	c.exeOnce.Do(func() { c.exe = exe })
	return c, nil
}
