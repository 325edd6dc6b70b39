//go:build unix

package rights

import (
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Space holds the most descriptors one message carries (the
// kernel's SCM_MAX_FD, 253): a read with less room has the kernel close
// the rest inside the read, where a close can block.
var Space = unix.CmsgSpace(253 * 4)

// Received returns the descriptors in oob, close-on-exec.
func Received(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	return fds
}

// Discard closes descriptors another process sent, on a goroutine of its
// own: closing one can block for as long as that process wants (a TCP
// socket with SO_LINGER and unsent data, a FUSE file).
func Discard(fds ...int) {
	if len(fds) == 0 {
		return
	}
	go func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
}

// Conn is a Unix stream connection to another process that reads with
// recvmsg, so that descriptors the other process attaches (SCM_RIGHTS) are
// discarded here (see Discard) rather than closed by the kernel inside the
// read, which could then block past any deadline.
type Conn struct {
	*net.UnixConn
	oob []byte
}

// NewConn wraps c.
func NewConn(c *net.UnixConn) *Conn { return &Conn{UnixConn: c, oob: make([]byte, Space)} }

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, oobn, _, _, err := c.UnixConn.ReadMsgUnix(p, c.oob)
		if oobn > 0 {
			Discard(Received(c.oob[:oobn])...)
		}
		switch {
		case n < 0:
			return 0, err
		case n == 0 && err == nil && oobn > 0:
			continue // descriptors alone: nothing to read yet
		case n == 0 && err == nil:
			return 0, io.EOF // recvmsg says end of stream with 0
		}
		return n, err
	}
}
