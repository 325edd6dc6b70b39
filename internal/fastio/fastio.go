// Package fastio is the I/O of grpcipc's fast path beside its byte format
// (internal/wire): the batching writer a connection's goroutines share,
// the per-stream inbox with its flow control, and pooled message buffers.
// It knows frames and windows, not gRPC.
package fastio

import (
	"errors"
	"fmt"
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
	// maxKeptBuffer: buffers larger than this are not kept for reuse.
	maxKeptBuffer = 2 << 20
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
	err      error
	waiters  int        // goroutines waiting for the queue to drain
	drained  *sync.Cond // made by the first waiter
}

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

// Unlock writes what waits unless another goroutine is writing, which
// then does. It returns the connection's write error, if any.
func (w *Writer) Unlock() error {
	if w.flushing || w.err != nil {
		err := w.err
		if err != nil {
			w.buf = w.buf[:0]
		}
		w.mu.Unlock()
		return err
	}
	w.flushing = true
	for len(w.buf) > 0 && w.err == nil {
		b := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		w.Conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
		_, err := w.Conn.Write(b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The peer has not read for WriteTimeout: it is stuck or
			// hostile, and its connection goes.
			w.Conn.Close()
		}
		w.mu.Lock()
		if cap(b) <= maxKeptBuffer {
			w.spare = b[:0]
		} else {
			w.spare = nil
		}
		if err != nil {
			w.err = err
			w.buf = w.buf[:0]
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

// frame appends one whole frame.
// bufPool holds message buffers.
// bufPool holds message buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// GetBuf returns an empty message buffer from the pool.
func GetBuf() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuf gives a buffer back to the pool (a large one is dropped).
func PutBuf(b *[]byte) {
	if cap(*b) > maxKeptBuffer {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// TakeThreshold: a message payload at least this long is taken from the
// frame reader's buffer rather than copied.
const TakeThreshold = 32 << 10

// Taker takes the frame reader's buffer holding the last payload, of n
// bytes, giving the reader another.
type Taker interface{ Take(n int) *[]byte }

// TakeFrom implements Take for a connection's reader.
func TakeFrom(r *wire.Reader, n int) *[]byte {
	nb := GetBuf()
	old := r.Swap(*nb)
	*nb = old[:n]
	return nb
}

// inMsg is a received message and the bytes of its last frame, which the
// reader gives back to the sender when the message is taken.
type inMsg struct {
	buf    *[]byte
	credit int
}

// Inbox is what a stream received and its flow control: the messages not
// yet taken, whether the peer has finished sending, and the windows both
// ways. The connection's reader adds; the stream's user takes.
type Inbox struct {
	mu      sync.Mutex
	queue   []inMsg
	first   [1]inMsg // the queue's first storage: most calls have one message
	head    int
	ended   bool            // the peer sends no more messages
	err     error           // the stream failed
	ready   chan struct{}   // made by a waiter for the next message
	asm     *wire.Assembler // a message arriving in parts (reader only)
	recvWin int             // bytes the peer may still send (reader)
	credit  int             // bytes taken, not yet given back
	held    int             // bytes of parts kept while messages waited
	sendWin int             // bytes this side may still send
	winUp   chan struct{}   // made by a waiter for the send window
}

func (b *Inbox) Init() {
	b.queue = b.first[:0]
	b.recvWin = wire.InitialWindow
	b.sendWin = wire.InitialWindow
}

// wake signals c, if someone made it to wait (b.mu held).
func wake(c chan struct{}) {
	if c == nil {
		return
	}
	select {
	case c <- struct{}{}:
	default:
	}
}

// waitChan returns *c, making it first (b.mu held).
func waitChan(c *chan struct{}) chan struct{} {
	if *c == nil {
		*c = make(chan struct{}, 1)
	}
	return *c
}

// ErrFlowControl: the peer sent more than its window.
var ErrFlowControl = fmt.Errorf("%w: a stream's MESSAGE bytes exceed its window", wire.ErrProtocol)

// Add takes a MESSAGE frame (reader). It returns bytes to give back at
// once (parts of a message, which are bounded by the size limit rather
// than the window), a message-size error for the stream, or a protocol
// error for the connection.
func (b *Inbox) Add(f wire.Flags, p []byte, max int, t Taker) (giveBack int, tooLarge, connErr error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recvWin -= len(p)
	if b.recvWin < 0 {
		return 0, nil, ErrFlowControl
	}
	if b.ended || b.err != nil {
		// A message after the end, or for a failed stream: dropped, its
		// bytes given back.
		b.recvWin += len(p)
		return len(p), nil, nil
	}
	if b.asm == nil {
		if f&wire.FlagMore == 0 && len(p) <= max {
			var m *[]byte
			if len(p) >= TakeThreshold {
				m = t.Take(len(p))
			} else {
				m = GetBuf()
				*m = append(*m, p...)
			}
			b.queue = append(b.queue, inMsg{buf: m, credit: len(p)})
			wake(b.ready)
			return 0, nil, nil
		}
		b.asm = wire.NewAssembler(max)
	}
	msg, done, err := b.asm.Add(f, p)
	if err != nil {
		b.recvWin += len(p)
		return len(p), err, nil
	}
	if !done {
		// A part: the size limit bounds a message in parts, so its bytes
		// go back at once while the application has taken every message
		// (a message larger than the window must get through); while
		// messages wait, they count against the window like the rest.
		if b.head == len(b.queue) {
			b.recvWin += len(p)
			return len(p), nil, nil
		}
		b.held += len(p)
		return 0, nil, nil
	}
	m := GetBuf()
	*m = append(*m, msg...)
	b.queue = append(b.queue, inMsg{buf: m, credit: len(p)})
	wake(b.ready)
	return 0, nil, nil
}

// End marks the peer's end of sending (err nil) or the stream's failure.
func (b *Inbox) End(err error) {
	b.mu.Lock()
	if err != nil && b.err == nil {
		b.err = err
	}
	b.ended = true
	wake(b.ready)
	wake(b.winUp)
	b.mu.Unlock()
}

// Next waits for the next message. It returns nil and no error at the
// peer's end of sending, and done's error when done ends first. The
// caller gives the bytes of credit back when it has taken the message.
func (b *Inbox) Next(done <-chan struct{}, doneErr func() error) (*[]byte, int, error) {
	for {
		b.mu.Lock()
		if b.head < len(b.queue) {
			m := b.queue[b.head]
			b.queue[b.head] = inMsg{}
			b.head++
			if b.head == len(b.queue) {
				b.queue, b.head = b.queue[:0], 0
			}
			b.mu.Unlock()
			return m.buf, m.credit, nil
		}
		if b.err != nil || b.ended {
			err := b.err
			b.mu.Unlock()
			return nil, 0, err
		}
		ready := waitChan(&b.ready)
		b.mu.Unlock()
		select {
		case <-ready:
		case <-done:
			return nil, 0, doneErr()
		}
	}
}

// Taken adds n bytes taken by the application; it returns how many to
// give back now, if enough have been taken to be worth a WINDOW frame.
func (b *Inbox) Taken(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.credit += n
	empty := b.head == len(b.queue)
	if empty {
		b.credit += b.held
		b.held = 0
	}
	if b.ended {
		return 0
	}
	// Give back in batches, or at once when the application waits and the
	// sender may be short of the window for its next part.
	if b.credit < windowThreshold && !(empty && b.recvWin < 2*MinSendChunk && b.credit > 0) {
		return 0
	}
	n, b.credit = b.credit, 0
	b.recvWin += n
	return n
}

// Drain releases the messages not taken.
func (b *Inbox) Drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := b.head; i < len(b.queue); i++ {
		PutBuf(b.queue[i].buf)
	}
	b.queue, b.head = b.first[:0], 0
	b.first[0] = inMsg{}
}

// Grow adds a WINDOW frame's increment to the send window.
func (b *Inbox) Grow(n uint32) {
	b.mu.Lock()
	b.sendWin += int(n)
	wake(b.winUp)
	b.mu.Unlock()
}

// Reserve waits until the send window is open and takes up to want bytes
// of it.
func (b *Inbox) Reserve(want int, done <-chan struct{}, doneErr func() error) (int, error) {
	for {
		b.mu.Lock()
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		if b.sendWin >= min(want, MinSendChunk) {
			n := min(want, b.sendWin)
			b.sendWin -= n
			b.mu.Unlock()
			return n, nil
		}
		winUp := waitChan(&b.winUp)
		b.mu.Unlock()
		select {
		case <-winUp:
		case <-done:
			return 0, doneErr()
		}
	}
}

// TryReserve takes n bytes of the send window if it holds them.
func (b *Inbox) TryReserve(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sendWin >= n && b.err == nil {
		b.sendWin -= n
		return true
	}
	return false
}

// marshal appends msg's encoding to b. Protobuf messages are marshalled
// in place; others go through grpc-go's registered proto codec.
