package grpcipc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// readPeerCreds reads the identity of the process at the other end of a
// Unix socket connection.
func readPeerCreds(conn net.Conn, _ bool) (*Creds, error) {
	var (
		ucred  *unix.Ucred
		pidfd  = -1
		credEr error
	)
	if err := withFD(conn, func(fd int) {
		ucred, credEr = unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credEr != nil {
			return
		}
		// The pidfd names the very process that connected; without it
		// (kernel < 6.5: ENOPROTOOPT) nothing is read by PID.
		if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			unix.CloseOnExec(p)
			pidfd = p
		}
	}); err != nil {
		return nil, err
	}
	if credEr != nil {
		return nil, fmt.Errorf("peer credentials: %w", os.NewSyscallError("getsockopt SO_PEERCRED", credEr))
	}
	c := &Creds{
		pid: int(ucred.Pid), hasPID: ucred.Pid > 0,
		uid: int(ucred.Uid), gid: int(ucred.Gid), hasUID: true,
	}
	if pidfd >= 0 && ucred.Pid > 0 {
		c.pinned = pinnedProcess{pid: int(ucred.Pid), pidfd: pidfd, held: true}
	} else if pidfd >= 0 {
		unix.Close(pidfd)
	}
	return c, nil
}

// pinnedProcess is the peer process held by a pidfd: what is read of it by
// PID from /proc is kept only if the pidfd shows the process still alive
// afterwards, since only then can the PID not have been reused.
type pinnedProcess struct {
	pid   int
	pidfd int
	held  bool // a pidfd was had

	mu     sync.Mutex
	closed bool
}

func (p *pinnedProcess) valid() bool { return p.held }

// alive reports whether the pinned process still exists (EPERM: it does,
// but this process may not signal it).
func (p *pinnedProcess) alive() bool {
	err := unix.PidfdSendSignal(p.pidfd, 0, nil, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// read runs f, which reads /proc/PID, while the pidfd is open, and keeps its
// result only if the process outlived the read.
func (p *pinnedProcess) read(f func(dir string) bool) bool {
	if !p.valid() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	return f("/proc/"+strconv.Itoa(p.pid)) && p.alive()
}

func (p *pinnedProcess) executable() string {
	var exe string
	if !p.read(func(dir string) bool {
		var err error
		exe, err = os.Readlink(dir + "/exe")
		return err == nil
	}) {
		return ""
	}
	return exe
}

func (p *pinnedProcess) groups() ([]int, bool) {
	var groups []int
	ok := p.read(func(dir string) bool {
		b, err := os.ReadFile(dir + "/status")
		if err != nil {
			return false
		}
		s := bufio.NewScanner(bytes.NewReader(b))
		for s.Scan() {
			rest, found := bytes.CutPrefix(s.Bytes(), []byte("Groups:"))
			if !found {
				continue
			}
			groups = []int{}
			for _, f := range bytes.Fields(rest) {
				g, err := strconv.Atoi(string(f))
				if err != nil {
					return false
				}
				groups = append(groups, g)
			}
			return true
		}
		return false
	})
	return groups, ok
}

func (p *pinnedProcess) release() {
	if !p.valid() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		unix.Close(p.pidfd)
	}
}
