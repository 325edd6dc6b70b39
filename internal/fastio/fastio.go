// Package fastio is the I/O of grpcipc's fast path beside its byte format
// (internal/wire): the batching writer a connection's goroutines share,
// the per-stream inbox with its flow control, and pooled message buffers.
// It knows frames and windows, not gRPC.
package fastio

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
)

// Limits of the fast path's streams (docs/protocol.md).
const (
	// windowThreshold: a reader gives bytes back once it has taken this many.
	windowThreshold = wire.InitialWindow / 4
	// MinSendChunk: a sender waits for this much window (or what it has
	// left to send) rather than send slivers.
	MinSendChunk = 64 << 10
)

// Writer writes frames from the goroutines that make them: each
// appends its frames under the lock, and whoever finds no write in
// progress writes everything queued so far in one system call, so that
// frames queued while a write runs go out together with the next.
//
// A peer that stops reading cannot make it hold more than MaxQueued
// bytes (those who would add more wait for the write in progress), nor
// hold a write for more than WriteTimeout: then the connection is closed.
type Writer struct {
	Conn     net.Conn // set before the first Lock
	mu       sync.Mutex
	buf      []byte // frames waiting
	spare    []byte // the other buffer, reused
	flushing bool
	deferred int // UnlockDeferred calls since the buffer was last taken
	// out: the bytes taken from buf so far, to be written or dropped after
	// an error (buf begins at this offset of the stream); written: those
	// that writes took
	out, written uint64
	err          error
	waiters      int           // goroutines waiting for the queue to drain
	drained      *sync.Cond    // made by the first waiter
	parts        chan struct{} // the token of sending a message in parts
	partsMu      sync.Mutex
	// Files sends the frames with descriptors (AttachFiles): the Unix
	// socket under Conn, if Conn wraps one (nil: Conn)
	Files net.Conn
	// withFiles: frames in buf that go alone with descriptors
	withFiles []filesFrame
}

// AcquireParts waits for the connection's token of sending a message in
// parts, or for done (false). One message at a time goes out in parts
// while its stream's window allows, so that the reader assembles one at a
// time rather than many halves that its memory budget could not finish
// (other messages, in one frame, go out meanwhile); a sender that must
// wait for its window gives the token back while it waits.
func (w *Writer) AcquireParts(done <-chan struct{}) bool {
	w.partsMu.Lock()
	if w.parts == nil {
		w.parts = make(chan struct{}, 1)
	}
	parts := w.parts
	w.partsMu.Unlock()
	select {
	case parts <- struct{}{}:
		return true
	case <-done:
		return false
	}
}

// ReleaseParts gives back the token AcquireParts took.
func (w *Writer) ReleaseParts() { <-w.parts }

// Bounds of a Writer.
const (
	MaxQueued    = 8 << 20
	WriteTimeout = 10 * time.Second
)

// Lock returns the buffer to append frames to, until Unlock; it waits
// while a write is in progress and the queue is full.
func (w *Writer) Lock() *[]byte {
	w.mu.Lock()
	for w.flushing && len(w.buf) >= MaxQueued && w.err == nil {
		if w.drained == nil {
			w.drained = sync.NewCond(&w.mu)
		}
		w.waiters++
		w.drained.Wait()
		w.waiters--
	}
	return &w.buf
}

// Release unlocks the Writer without writing: for a caller that appended
// nothing.
func (w *Writer) Release() { w.mu.Unlock() }

// MaxDeferred: UnlockDeferred writes at once when this much waits.
const MaxDeferred = 64 << 10

// UnlockDeferred unlocks the Writer without writing what waits, for a
// caller that knows that another goroutine will soon call Unlock or
// Flush, so that their frames go out in one write; but it writes at once
// when upTo callers (or more) have deferred since the last write, or
// MaxDeferred bytes (or more) wait, so that the peer can begin on them. It
// returns the connection's write error, if any.
func (w *Writer) UnlockDeferred(upTo int) error {
	w.deferred++
	if w.deferred >= upTo || len(w.buf) >= MaxDeferred {
		return w.Unlock()
	}
	err := w.err
	if err != nil {
		w.drop()
	}
	w.mu.Unlock()
	return err
}

// drop drops what waits, after a write error (w.mu held): the
// descriptors attached to its frames are closed.
func (w *Writer) drop() {
	w.out += uint64(len(w.buf))
	w.buf = w.buf[:0]
	for _, f := range w.withFiles {
		closeFDs(f.fds)
	}
	w.withFiles = nil
}

// Mark returns the offset in the connection's stream of bytes of the end
// of what waits (between Lock and its Unlock): Unsent says whether
// everything before it can never have reached the peer.
func (w *Writer) Mark() uint64 { return w.out + uint64(len(w.buf)) }

// Unsent says whether some of the bytes before mark (Mark) never went out
// and never will: a write failed (the Writer is broken) before a write
// took them all. Bytes that wait may go out yet, and those of a write
// under way may have reached the peer whatever the write returns later:
// Unsent waits for a write under way to end, so call it only once the
// connection is closed (which ends a write at once), after a Flush (which
// drops what waits on a broken connection).
func (w *Writer) Unsent(mark uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.flushing {
		if w.drained == nil {
			w.drained = sync.NewCond(&w.mu)
		}
		w.waiters++
		w.drained.Wait()
		w.waiters--
	}
	return w.err != nil && w.written < mark
}

// Flush writes what waits, unless another goroutine is writing, which
// then does (Unlock without appending). It returns the connection's write
// error, if any.
func (w *Writer) Flush() error {
	w.mu.Lock()
	return w.Unlock()
}

// Unlock writes what waits unless another goroutine is writing, which
// then does. It returns the connection's write error, if any.
func (w *Writer) Unlock() error {
	if w.flushing || w.err != nil {
		err := w.err
		if err != nil {
			w.drop()
		}
		w.mu.Unlock()
		return err
	}
	w.flushing = true
	for len(w.buf) > 0 && w.err == nil {
		b, files := w.buf, w.withFiles
		w.buf, w.withFiles = w.spare[:0], nil
		w.deferred = 0
		w.out += uint64(len(b))
		w.mu.Unlock()
		w.Conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
		n, err := w.write(b, files)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The peer has not read for WriteTimeout: it is stuck or
			// hostile, and its connection goes.
			w.Conn.Close()
		}
		w.mu.Lock()
		w.written += uint64(n)
		if cap(b) <= maxKeptBuffer {
			w.spare = b[:0]
		} else {
			w.spare = nil
		}
		if err != nil {
			w.err = err
			w.drop()
		}
		if w.waiters > 0 {
			w.drained.Broadcast()
		}
	}
	w.flushing = false
	err := w.err
	w.mu.Unlock()
	return err
}

// filesFrame is a frame in a Writer's buffer, from start to end, that
// goes out alone in one sendmsg with descriptors attached (SCM_RIGHTS).
type filesFrame struct {
	start, end int
	fds        []int // the Writer's own: closed once sent, or dropped
}

// AttachFiles, between Lock and Unlock, attaches fds to the frame that
// the caller appended to the buffer from offset at to its end: the frame
// goes out alone, in one sendmsg with fds, in order with the others.
// fds become the Writer's, which closes them once sent or dropped: pass
// duplicates (DupFiles), so that nobody can close a number and have it
// reused for another file before the write. The Writer's Conn must carry
// descriptors (CanCarryFiles).
func (w *Writer) AttachFiles(at int, fds []int) {
	w.withFiles = append(w.withFiles, filesFrame{at, len(w.buf), fds})
}

// write writes b, whose frames files go out alone with their
// descriptors; it returns the bytes written. The descriptors of frames it
// could not write are closed.
func (w *Writer) write(b []byte, files []filesFrame) (int, error) {
	if len(files) == 0 {
		return w.Conn.Write(b)
	}
	pos := 0
	for i, f := range files {
		if f.start > pos {
			n, err := w.Conn.Write(b[pos:f.start])
			pos += n
			if err != nil {
				for _, f := range files[i:] {
					closeFDs(f.fds)
				}
				return pos, err
			}
		}
		fc := w.Files
		if fc == nil {
			fc = w.Conn
		}
		n, err := sendFiles(fc, b[f.start:f.end], f.fds)
		closeFDs(f.fds)
		pos += n
		if err == nil && pos < f.end {
			// The rest of a frame that the socket took in part: its
			// descriptors went with its first byte.
			n, err = w.Conn.Write(b[pos:f.end])
			pos += n
		}
		if err != nil {
			for _, f := range files[i+1:] {
				closeFDs(f.fds)
			}
			return pos, err
		}
	}
	if pos < len(b) {
		n, err := w.Conn.Write(b[pos:])
		return pos + n, err
	}
	return pos, nil
}
