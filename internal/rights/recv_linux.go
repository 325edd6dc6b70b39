package rights

import (
	"errors"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// receiver reads with recvmsg(2) through the connection's poller, with
// MSG_CMSG_CLOEXEC (what arrives is close-on-exec inside the call) and no
// room for the sender's address: net's ReadMsgUnix and x/sys's Recvmsg
// both return it, which costs two allocations a read when the peer's
// socket is bound (a server's, read by a client). A Conn's reads are one
// at a time, so the message and the function given to the poller are made
// once and take their arguments from these fields.
type receiver struct {
	raw  syscall.RawConn
	msg  unix.Msghdr
	iov  unix.Iovec
	oob  []byte
	fn   func(fd uintptr) bool
	n    int
	oobn int
	err  error
}

func (r *receiver) init(c *net.UnixConn, oob []byte) {
	r.raw, r.err = c.SyscallConn()
	r.oob = oob
	r.fn = r.call
}

// call is one recvmsg: false (wait for the socket to be readable) on
// EAGAIN.
func (r *receiver) call(fd uintptr) bool {
	r.msg.Iov = &r.iov
	r.msg.SetIovlen(1)
	r.msg.Control = &r.oob[0]
	r.msg.SetControllen(len(r.oob))
	for {
		n, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), unix.MSG_CMSG_CLOEXEC)
		switch e {
		case 0:
			r.n, r.oobn, r.err = int(n), int(r.msg.Controllen), nil
			if r.msg.Flags&unix.MSG_CTRUNC != 0 {
				// Room was made for the most a message carries: the
				// kernel closed what did not fit.
				r.err = errors.New("descriptors arrived that did not fit: the kernel closed them")
			}
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.n, r.oobn, r.err = -1, 0, os.NewSyscallError("recvmsg", e)
		return true
	}
}

// recv reads into p, and the descriptors that come with it into the oob
// given to init: the bytes read (-1 with an error), the oob's length.
func (r *receiver) recv(c *net.UnixConn, p []byte) (int, int, error) {
	if r.raw == nil {
		return -1, 0, r.err
	}
	r.iov.Base = &p[0]
	r.iov.SetLen(len(p))
	r.n, r.oobn, r.err = 0, 0, nil
	if err := r.raw.Read(r.fn); err != nil {
		return -1, 0, err // the deadline, or the connection closed
	}
	r.iov.Base = nil // p is the caller's again
	return r.n, r.oobn, r.err
}
