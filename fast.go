package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Fast-path limits (docs/protocol.md).
const (
	// maxStreams is how many streams a fast-path connection may have open
	// at once; a client waits for a free one, a server closes a connection
	// that opens more.
	maxStreams = 256
	// maxFramePayload is the largest MESSAGE payload a sender puts in one
	// frame: a 1 MiB message and its field's few bytes of encoding fit;
	// readers accept wire.DefaultMaxFrame.
	maxFramePayload = 1<<20 + 32<<10
	// windowThreshold: a reader gives bytes back once it has taken this many.
	windowThreshold = wire.InitialWindow / 4
	// minSendChunk: a sender waits for this much window (or what it has
	// left to send) rather than send slivers.
	minSendChunk = 64 << 10
	// maxKeptBuffer: write buffers larger than this are not kept.
	maxKeptBuffer = 2 << 20
)

// errServerStopped ends the connections of a stopped server.
var errServerStopped = errors.New("grpcipc: the server stopped")

// frameWriter writes frames from the goroutines that make them: each
// appends its frames under the lock, and whoever finds no write in
// progress writes everything queued so far in one system call, so that
// frames queued while a write runs go out together with the next.
//
// A peer that stops reading cannot make it hold more than maxQueued
// bytes (those who would add more wait for the write in progress), nor
// hold a write for more than writeTimeout: then the connection is closed.
type frameWriter struct {
	conn     net.Conn
	mu       sync.Mutex
	buf      []byte // frames waiting
	spare    []byte // the other buffer, reused
	flushing bool
	err      error
	waiters  int        // goroutines waiting for the queue to drain
	drained  *sync.Cond // made by the first waiter
}

// Bounds of a frameWriter.
const (
	maxQueued    = 8 << 20
	writeTimeout = 10 * time.Second
)

// lock returns the buffer to append frames to, until unlock; it waits
// while a write is in progress and the queue is full.
func (w *frameWriter) lock() *[]byte {
	w.mu.Lock()
	for w.flushing && len(w.buf) >= maxQueued && w.err == nil {
		if w.drained == nil {
			w.drained = sync.NewCond(&w.mu)
		}
		w.waiters++
		w.drained.Wait()
		w.waiters--
	}
	return &w.buf
}

// unlock writes what waits unless another goroutine is writing, which
// then does. It returns the connection's write error, if any.
func (w *frameWriter) unlock() error {
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
		w.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err := w.conn.Write(b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The peer has not read for writeTimeout: it is stuck or
			// hostile, and its connection goes.
			w.conn.Close()
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
func appendFrame(b []byte, stream uint32, t wire.Type, f wire.Flags, payload []byte) []byte {
	b = wire.AppendHeader(b, wire.Header{Length: uint32(len(payload)), Stream: stream, Type: t, Flags: f})
	return append(b, payload...)
}

// beginFrame appends a header whose length endFrame sets once the payload
// is appended.
func beginFrame(b []byte, stream uint32, t wire.Type, f wire.Flags) ([]byte, int) {
	return wire.AppendHeader(b, wire.Header{Stream: stream, Type: t, Flags: f}), len(b)
}

func endFrame(b []byte, at int) {
	n := uint32(len(b) - at - wire.HeaderSize)
	b[at], b[at+1], b[at+2], b[at+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// bufPool holds message buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxKeptBuffer {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// takeThreshold: a message payload at least this long is taken from the
// frame reader's buffer rather than copied.
const takeThreshold = 32 << 10

// taker takes the frame reader's buffer holding the last payload, of n
// bytes, giving the reader another.
type taker interface{ take(n int) *[]byte }

// takeFrom implements take for a connection's reader.
func takeFrom(r *wire.Reader, n int) *[]byte {
	nb := getBuf()
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

// inbox is what a stream received and its flow control: the messages not
// yet taken, whether the peer has finished sending, and the windows both
// ways. The connection's reader adds; the stream's user takes.
type inbox struct {
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

func (b *inbox) init() {
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

// errFlowControl: the peer sent more than its window.
var errFlowControl = fmt.Errorf("%w: a stream's MESSAGE bytes exceed its window", wire.ErrProtocol)

// add takes a MESSAGE frame (reader). It returns bytes to give back at
// once (parts of a message, which are bounded by the size limit rather
// than the window), a message-size error for the stream, or a protocol
// error for the connection.
func (b *inbox) add(f wire.Flags, p []byte, max int, t taker) (giveBack int, tooLarge, connErr error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recvWin -= len(p)
	if b.recvWin < 0 {
		return 0, nil, errFlowControl
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
			if len(p) >= takeThreshold {
				m = t.take(len(p))
			} else {
				m = getBuf()
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
	m := getBuf()
	*m = append(*m, msg...)
	b.queue = append(b.queue, inMsg{buf: m, credit: len(p)})
	wake(b.ready)
	return 0, nil, nil
}

// end marks the peer's end of sending (err nil) or the stream's failure.
func (b *inbox) end(err error) {
	b.mu.Lock()
	if err != nil && b.err == nil {
		b.err = err
	}
	b.ended = true
	wake(b.ready)
	wake(b.winUp)
	b.mu.Unlock()
}

// next waits for the next message. It returns nil and no error at the
// peer's end of sending, and done's error when done ends first. The
// caller gives the bytes of credit back when it has taken the message.
func (b *inbox) next(done <-chan struct{}, doneErr func() error) (*[]byte, int, error) {
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

// taken adds n bytes taken by the application; it returns how many to
// give back now, if enough have been taken to be worth a WINDOW frame.
func (b *inbox) taken(n int) int {
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
	if b.credit < windowThreshold && !(empty && b.recvWin < 2*minSendChunk && b.credit > 0) {
		return 0
	}
	n, b.credit = b.credit, 0
	b.recvWin += n
	return n
}

// drain releases the messages not taken.
func (b *inbox) drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := b.head; i < len(b.queue); i++ {
		putBuf(b.queue[i].buf)
	}
	b.queue, b.head = b.first[:0], 0
	b.first[0] = inMsg{}
}

// grow adds a WINDOW frame's increment to the send window.
func (b *inbox) grow(n uint32) {
	b.mu.Lock()
	b.sendWin += int(n)
	wake(b.winUp)
	b.mu.Unlock()
}

// reserve waits until the send window is open and takes up to want bytes
// of it.
func (b *inbox) reserve(want int, done <-chan struct{}, doneErr func() error) (int, error) {
	for {
		b.mu.Lock()
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		if b.sendWin >= min(want, minSendChunk) {
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

// tryReserve takes n bytes of the send window if it holds them.
func (b *inbox) tryReserve(n int) bool {
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
func marshal(b []byte, msg any) ([]byte, error) {
	if msg == nil {
		return b, nil // as grpc-go: a nil message is an empty one
	}
	if m, ok := msg.(proto.Message); ok {
		return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m)
	}
	c := encoding.GetCodecV2("proto")
	if c == nil {
		return nil, fmt.Errorf("grpcipc: cannot marshal %T: not a protobuf message", msg)
	}
	bs, err := c.Marshal(msg)
	if err != nil {
		return nil, err
	}
	b = append(b, bs.Materialize()...)
	bs.Free()
	return b, nil
}

// messageSize is msg's encoded size (cached for marshal).
func messageSize(msg any) int {
	if msg == nil {
		return 0
	}
	if m, ok := msg.(proto.Message); ok {
		return proto.Size(m)
	}
	return -1
}

// unmarshal decodes b into msg.
func unmarshal(b []byte, msg any) error {
	if m, ok := msg.(proto.Message); ok {
		return proto.Unmarshal(b, m)
	}
	c := encoding.GetCodecV2("proto")
	if c == nil {
		return fmt.Errorf("grpcipc: cannot unmarshal into %T: not a protobuf message", msg)
	}
	return c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, msg)
}

// toKV turns metadata into the wire's list, refusing what gRPC refuses;
// reserved (grpc- and :) keys are left out, as grpc-go leaves them out.
func toKV(md metadata.MD, out []wire.KV) ([]wire.KV, error) {
	for k, vs := range md {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") {
			continue
		}
		for _, v := range vs {
			if err := wire.CheckKV(k, v); err != nil {
				return nil, status.Errorf(codes.Internal, "grpcipc: metadata: %v", err)
			}
			out = append(out, wire.KV{Key: k, Value: v})
		}
	}
	return out, nil
}

// fromKV turns the wire's list into metadata.
func fromKV(kv []wire.KV) metadata.MD {
	if len(kv) == 0 {
		return nil
	}
	md := make(metadata.MD, len(kv))
	for _, e := range kv {
		md[e.Key] = append(md[e.Key], e.Value)
	}
	return md
}

// okStatus is the status of every call that ends well (status values are
// not changed once made).
var okStatus = status.New(codes.OK, "")

// appendOKTrailer appends the payload of TRAILERS for a call that ended
// well, with md.
func appendOKTrailer(b []byte, md metadata.MD) ([]byte, error) {
	kv, err := toKV(md, nil)
	if err != nil {
		return b, err
	}
	return wire.AppendTrailer(b, &wire.Trailer{Metadata: kv}), nil
}

// trailerOf is the TRAILERS payload of a call's outcome.
func trailerOf(st *status.Status, md metadata.MD) (*wire.Trailer, error) {
	t := &wire.Trailer{Code: uint32(st.Code()), Message: st.Message()}
	if len(t.Message) > wire.MaxStatusMessage {
		t.Message = t.Message[:wire.MaxStatusMessage]
	}
	if p := st.Proto(); len(p.GetDetails()) > 0 {
		d, err := proto.Marshal(p)
		if err != nil {
			return nil, err
		}
		t.Details = d
	}
	var err error
	if t.Metadata, err = toKV(md, nil); err != nil {
		return nil, err
	}
	return t, nil
}

// statusOf turns a TRAILERS payload into the call's status.
func statusOf(t *wire.Trailer) *status.Status {
	if t.Code == 0 && len(t.Details) == 0 && t.Message == "" {
		return okStatus
	}
	if len(t.Details) > 0 {
		var p spb.Status
		if proto.Unmarshal(t.Details, &p) == nil && p.GetCode() == int32(t.Code) {
			return status.FromProto(&p)
		}
	}
	return status.New(codes.Code(t.Code), t.Message)
}

// contextStatus is the status of a call whose context ended.
func contextStatus(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}
