//go:build unix

package rights

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

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
// never closed by the kernel inside the read, which could then block past
// any deadline. By default they are discarded (see Discard); once
// KeepFiles is called they are kept, with the place in the stream of
// bytes where they arrived, for the reader of the bytes to take (TakeFiles)
// or to refuse (Stray).
type Conn struct {
	*net.UnixConn
	oob []byte
	off atomic.Uint64 // bytes read so far
	rcv receiver      // how this OS reads with recvmsg

	mu       sync.Mutex
	keep     bool
	closed   bool
	arrivals []arrival   // kept, not yet taken, oldest first
	some     atomic.Bool // len(arrivals) > 0
}

// arrival is descriptors that arrived with the bytes [start, end) of the
// stream: the kernel attaches them to the first byte that the sender sent
// with them, and ends a read after the bytes they came with, so that
// byte is among those.
type arrival struct {
	start, end uint64
	fds        []int
}

// MaxKept: with more unclaimed arrivals than this at once, Read fails.
// A sender that attaches descriptors only to the FILES frames it sends
// alone leaves at most two: the one whose frame began in the bytes read
// last, and one that came with the rest of that frame.
const MaxKept = 2

// ErrStrayFiles is wrapped by the errors for descriptors that arrived
// where the protocol does not announce them.
var ErrStrayFiles = errors.New("descriptors attached to bytes that do not announce them")

// NewConn wraps c.
func NewConn(c *net.UnixConn) *Conn {
	conn := &Conn{UnixConn: c, oob: make([]byte, Space)}
	conn.rcv.init(c, conn.oob)
	return conn
}

// KeepFiles makes Read keep the descriptors that arrive from now on.
func (c *Conn) KeepFiles() {
	c.mu.Lock()
	c.keep = true
	c.mu.Unlock()
}

// Offset returns how many bytes Read has returned so far.
func (c *Conn) Offset() uint64 { return c.off.Load() }

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, oobn, err := c.rcv.recv(c.UnixConn, p)
		start := c.off.Load()
		if n > 0 {
			c.off.Add(uint64(n))
		}
		if oobn > 0 {
			if kerr := c.kept(start, start+uint64(max(n, 0)), Received(c.oob[:oobn])); kerr != nil {
				return 0, kerr
			}
		}
		switch {
		case n < 0:
			return 0, err
		case n == 0 && err == nil && oobn > 0:
			continue // descriptors alone: nothing to read yet
		case n == 0 && err == nil, errors.Is(err, io.EOF):
			// The end of the stream: io.EOF itself, which readers of an
			// io.Reader compare with ==.
			return n, io.EOF
		}
		return n, err
	}
}

// kept keeps fds, which arrived with bytes [start, end), or discards them.
func (c *Conn) kept(start, end uint64, fds []int) error {
	if len(fds) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.keep || c.closed {
		Discard(fds...)
		return nil
	}
	if start == end || len(c.arrivals) >= MaxKept {
		// With no bytes (no frame can announce them), or more arrivals
		// than a well-behaved sender leaves unclaimed.
		Discard(fds...)
		c.discardLocked()
		return fmt.Errorf("%w: %d descriptors arrived with %d bytes at offset %d, %d arrivals not yet claimed", ErrStrayFiles, len(fds), end-start, start, MaxKept)
	}
	c.arrivals = append(c.arrivals, arrival{start, end, fds})
	c.some.Store(true)
	return nil
}

// TakeFiles returns the n descriptors that arrived with the byte at offset
// at (counted as Offset counts), which is the first byte of a frame that
// announces n descriptors; the caller owns them. Descriptors that
// arrived before it and were not taken, none with that byte, or not n:
// all kept descriptors are closed, and the error wraps ErrStrayFiles.
func (c *Conn) TakeFiles(at uint64, n int) ([]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.arrivals) > 0 && c.arrivals[0].end <= at {
		a := c.arrivals[0]
		c.discardLocked()
		return nil, fmt.Errorf("%w: %d descriptors arrived with bytes %d to %d, before the frame at %d that announces %d", ErrStrayFiles, len(a.fds), a.start, a.end, at, n)
	}
	if len(c.arrivals) == 0 || c.arrivals[0].start > at {
		c.discardLocked()
		return nil, fmt.Errorf("%w: a frame at offset %d announces %d descriptors, and none arrived with it", ErrStrayFiles, at, n)
	}
	a := c.arrivals[0]
	if len(a.fds) != n {
		c.discardLocked()
		return nil, fmt.Errorf("%w: a frame at offset %d announces %d descriptors, and %d arrived with it", ErrStrayFiles, at, n, len(a.fds))
	}
	c.arrivals[0] = arrival{}
	c.arrivals = c.arrivals[1:]
	c.some.Store(len(c.arrivals) > 0)
	return a.fds, nil
}

// Stray checks that no descriptors arrived with bytes that all lie before
// offset upTo without being taken: the frames that end there announced
// none. If some did, all kept descriptors are closed and the error wraps
// ErrStrayFiles.
func (c *Conn) Stray(upTo uint64) error {
	if !c.some.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.arrivals) == 0 || c.arrivals[0].end > upTo {
		return nil
	}
	a := c.arrivals[0]
	c.discardLocked()
	return fmt.Errorf("%w: %d descriptors arrived with bytes %d to %d, which no FILES frame began", ErrStrayFiles, len(a.fds), a.start, a.end)
}

// Kept says whether descriptors are kept that nobody took yet.
func (c *Conn) Kept() bool { return c.some.Load() }

// discardLocked discards every kept descriptor (c.mu held).
func (c *Conn) discardLocked() {
	for i, a := range c.arrivals {
		Discard(a.fds...)
		c.arrivals[i] = arrival{}
	}
	c.arrivals = c.arrivals[:0]
	c.some.Store(false)
}

// Close closes the connection and discards the descriptors kept.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.discardLocked()
	c.mu.Unlock()
	return c.UnixConn.Close()
}
