package fastpath

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastio"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// serverStream is one call on the server's side of the fast path. It is
// the handler's grpc.ServerStream.
type serverStream struct {
	c      *serverConn
	id     uint32
	method string
	m      *method
	ctx    context.Context
	cctx   callCtx   // the call's context (callctx.go); ctx is it or one derived from it
	begin  time.Time // for stats handlers
	in     fastio.Inbox
	// charged: the call's metadata, charged to the connection's budget
	// until the call ends
	charged int
	sts     transportStream

	unseen     bool                  // refused by the policy: stats handlers are not told
	halfClosed bool                  // the client sent HALF_CLOSE (reader's)
	yielded    bool                  // its handler, run on the reading goroutine, gave the reading away (its goroutine's)
	ready      atomic.Bool           // authorized, a method found
	dispatched atomic.Bool           // a handler runs it, or it ended before one did
	batch      atomic.Pointer[batch] // the batch it runs in, if any (batch.go)
	doneOnce   sync.Once

	fileMu     sync.Mutex
	files      []*os.File // the client's, until the handler takes them (files.go)
	takesFiles bool       // the client takes files with the response
	sentFiles  int        // files sent with the response (hmu)

	hmu        sync.Mutex // the fields below, and the order of sends
	header     metadata.MD
	headerSent bool
	trailer    metadata.MD
	finished   bool
	recvErr    error // a message the client sent could not be received
}

func (st *serverStream) started() bool { return st.ready.Load() }

// cancel ends the call's context.
func (st *serverStream) cancel() { st.cctx.cancel(context.Canceled) }

// done tells the connection this stream's handler is over.
func (st *serverStream) done() {
	st.doneOnce.Do(func() {
		st.cancel()
		// Ended before drained: a frame the reader adds later (it may
		// have waited for room with this stream in hand) is dropped, not
		// charged to a stream no one will drain again.
		st.in.Abort(errStreamDone)
		st.c.budget.Release(st.charged)
		st.closeFiles()
		st.c.remove(st)
		st.c.handlers.Done()
	})
}

// abandon ends a stream no handler took (cancelled, or its connection
// closed): it has no one to answer.
func (st *serverStream) abandon() {
	if st.dispatched.CompareAndSwap(false, true) {
		st.done()
	}
}

// run runs the stream's handler (on a worker).
func (st *serverStream) run() {
	if !st.dispatched.CompareAndSwap(false, true) {
		return
	}
	s := st.c.s
	if st.m.md != nil {
		start := time.Now()
		reply, err := st.m.md.Handler(st.m.impl, st.ctx, st.decodeRequest, s.unary)
		st.finish(reply, err)
		st.m.observe(time.Since(start))
		return
	}
	var err error
	if s.stream == nil {
		err = st.m.sd.Handler(st.m.impl, st)
	} else {
		err = s.stream(st.m.impl, st, &grpc.StreamServerInfo{
			FullMethod: st.method, IsClientStream: st.m.sd.ClientStreams, IsServerStream: st.m.sd.ServerStreams,
		}, st.m.sd.Handler)
	}
	st.finish(nil, err)
}

// decodeRequest reads a unary call's one request message into v.
func (st *serverStream) decodeRequest(v any) error {
	b, _, err := st.in.Next(nil, nil)
	if err != nil {
		return err
	}
	if b == nil {
		return status.Error(codes.Internal, "grpcipc: the client sent no request message")
	}
	defer fastio.PutBuf(b)
	if err := unmarshal(*b, v); err != nil {
		return status.Errorf(codes.Internal, "grpcipc: failed to unmarshal the request: %v", err)
	}
	st.inPayload(v, len(*b))
	return nil
}

func (st *serverStream) inPayload(v any, n int) {
	for _, h := range st.c.s.cfg.Stats {
		h.HandleRPC(st.ctx, &stats.InPayload{Payload: v, Length: n, CompressedLength: n, WireLength: n + wire.HeaderSize, RecvTime: time.Now()})
	}
}

// recvFailed: a message could not be received (over the size limit). A
// handler that runs gets err from RecvMsg, and the call ends with it
// whatever the handler returns; one not yet run never will.
func (st *serverStream) recvFailed(err error) {
	st.hmu.Lock()
	if st.recvErr == nil {
		st.recvErr = err
	}
	st.hmu.Unlock()
	st.in.Abort(err)
	st.fail(err)
}

// fail ends a stream that no handler runs with err.
func (st *serverStream) fail(err error) {
	if st.dispatched.CompareAndSwap(false, true) {
		st.finish(nil, err)
	}
}

// finish sends the reply (if any and err is nil) and the trailers, in one
// write when they fit, and ends the stream.
func (st *serverStream) finish(reply any, err error) {
	defer st.done()
	c := st.c
	if err == nil && reply != nil {
		var sent bool
		if sent, err = st.sendMessage(reply, true); sent || errors.Is(err, errStreamDone) {
			return // the trailers went with the message, or the stream ended
		}
	}
	st.hmu.Lock()
	defer st.hmu.Unlock()
	if st.finished {
		return
	}
	st.finished = true
	if st.recvErr != nil {
		err = st.recvErr // the call failed whatever the handler made of it
	}
	s := statusOfError(err)
	t, terr := trailerOf(s, st.trailer, c.version)
	if terr != nil {
		s = status.Convert(terr)
		t, _ = trailerOf(s, nil, c.version)
	}
	b := c.w.Lock()
	sentHeader := !st.headerSent && len(st.header) > 0
	if sentHeader {
		st.appendHeaders(b)
	}
	*b = appendBlock(*b, st.id, wire.TypeTrailers, 0, func(b []byte) []byte { return wire.AppendTrailer(b, t) })
	st.unlockWriter()
	if sentHeader {
		st.hmu.Unlock()
		st.outHeader()
		st.hmu.Lock()
	}
	st.statsEnd(s)
}

// unlockWriter unlocks the connection's writer after the call's last
// frames: what waits is written, unless calls of its batch wait to run,
// whose replies go out with it (batch.go).
func (st *serverStream) unlockWriter() {
	if b := st.batch.Load(); b != nil && b.more() {
		st.c.w.UnlockDeferred(deferReplies)
		return
	}
	st.c.w.Unlock()
}

// statusOfError is the status a handler's error becomes, as in grpc-go.
func statusOfError(err error) *status.Status {
	if err == nil {
		return okStatus
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	return status.FromContextError(err)
}

func (st *serverStream) statsEnd(s *status.Status) {
	hs := st.c.s.cfg.Stats
	if len(hs) == 0 || st.unseen {
		return
	}
	now := time.Now()
	for _, h := range hs {
		h.HandleRPC(st.ctx, &stats.OutTrailer{Trailer: st.trailer.Copy()})
	}
	for _, h := range hs {
		h.HandleRPC(st.ctx, &stats.End{BeginTime: st.begin, EndTime: now, Trailer: st.trailer.Copy(), Error: s.Err()})
	}
}

// appendHeaders appends the HEADERS frame, in parts if it is larger than
// a frame (hmu held). Metadata that is not gRPC's, or over the limit
// (wire.MaxHeaderListSize; for a version-1 client, a frame), is not
// sent: SendHeader and SetHeader refuse it first.
func (st *serverStream) appendHeaders(b *[]byte) {
	st.headerSent = true
	kv, err := toKV(st.header, nil)
	if err != nil || st.c.headerErr(kv) != nil {
		kv = nil
	}
	*b = appendBlock(*b, st.id, wire.TypeHeaders, 0, func(b []byte) []byte { return wire.AppendMetadata(b, kv) })
}

// headerErr says why response metadata kv cannot be sent to this
// connection's client, or nil.
func (c *serverConn) headerErr(kv []wire.KV) error {
	if n := wire.ListSize(kv); n > wire.MaxHeaderListSize {
		return status.Errorf(codes.Internal, "grpcipc: the response header is %d bytes (as HTTP/2 counts it), over the fast path's limit (%d bytes)", n, wire.MaxHeaderListSize)
	}
	if c.version < 2 {
		if n := wire.MetadataSize(kv); n > wire.DefaultMaxFrame || len(kv) > wire.MaxMetadataV1 {
			return status.Errorf(codes.Internal, "grpcipc: the response header (%d entries, %d bytes) does not fit in a frame for a version-1 client (%d entries, %d bytes)", len(kv), n, wire.MaxMetadataV1, wire.DefaultMaxFrame)
		}
	}
	return nil
}

// outHeader tells the stats handlers that the header went out (outside
// the writer's lock: a slow handler holds up this call only).
func (st *serverStream) outHeader() {
	hs := st.c.s.cfg.Stats
	if len(hs) == 0 {
		return
	}
	st.hmu.Lock()
	md := st.header.Copy()
	st.hmu.Unlock()
	if md == nil {
		md = metadata.MD{}
	}
	for _, h := range hs {
		h.HandleRPC(st.ctx, &stats.OutHeader{Header: md})
	}
}

// errStreamDone: the stream has ended; nothing more is sent.
var errStreamDone = errors.New("grpcipc: the stream has ended")

// sendMessage sends a message; last asks to send the OK trailers with it
// (a unary reply), which it does, saying so, when the message fits in one
// frame.
func (st *serverStream) sendMessage(m any, last bool) (trailersSent bool, err error) {
	c := st.c
	size := messageSize(m)
	if size > c.s.cfg.MaxSend {
		return false, status.Errorf(codes.ResourceExhausted, "grpcipc: trying to send message larger than max (%d vs. %d)", size, c.s.cfg.MaxSend)
	}
	if size >= 0 && size <= maxFramePayload && st.in.TryReserve(size) {
		st.hmu.Lock()
		if st.finished {
			st.hmu.Unlock()
			return false, errStreamDone
		}
		b := c.w.Lock()
		sentHeader := !st.headerSent
		if sentHeader {
			if len(st.header) > 0 {
				st.appendHeaders(b)
			}
			st.headerSent = true
		}
		mark := len(*b)
		var at int
		*b, at = wire.BeginFrame(*b, st.id, wire.TypeMessage, 0)
		var err error
		*b, err = marshal(*b, m)
		if err != nil {
			*b = (*b)[:mark]
			c.w.Unlock()
			st.hmu.Unlock()
			return false, status.Errorf(codes.Internal, "grpcipc: failed to marshal the response: %v", err)
		}
		wire.EndFrame(*b, at)
		if last {
			st.finished = true
			mark := len(*b)
			*b, at = wire.BeginFrame(*b, st.id, wire.TypeTrailers, 0)
			if *b, err = appendOKTrailer(*b, st.trailer); err != nil {
				*b = (*b)[:mark] // bad trailer metadata: finish says so
				st.finished = false
				last = false
			} else {
				wire.EndFrame(*b, at)
			}
		}
		if last {
			st.unlockWriter()
		} else {
			c.w.Unlock()
		}
		st.hmu.Unlock()
		if sentHeader {
			st.outHeader()
		}
		st.outPayload(m, size)
		if last {
			st.statsEnd(okStatus)
		}
		return last, nil
	}
	// Large, or the window is short: marshal, then send part by part as
	// the window opens.
	buf := fastio.GetBuf()
	defer fastio.PutBuf(buf)
	if *buf, err = marshal(*buf, m); err != nil {
		return false, status.Errorf(codes.Internal, "grpcipc: failed to marshal the response: %v", err)
	}
	if len(*buf) > c.s.cfg.MaxSend {
		return false, status.Errorf(codes.ResourceExhausted, "grpcipc: trying to send message larger than max (%d vs. %d)", len(*buf), c.s.cfg.MaxSend)
	}
	if err := st.sendParts(*buf); err != nil {
		return false, err
	}
	st.outPayload(m, len(*buf))
	return false, nil
}

// sendParts sends an encoded message as MESSAGE frames as the window
// allows.
func (st *serverStream) sendParts(data []byte) error {
	c := st.c
	c.yieldReader(st) // the client's windows must be read meanwhile
	if len(data) > 0 {
		if !c.w.AcquireParts(st.ctx.Done()) {
			return ContextStatus(st.ctx)
		}
	}
	first := true
	for first || len(data) > 0 {
		want := min(len(data), maxFramePayload)
		n := 0
		if want > 0 {
			var err error
			n, err = st.in.ReservePart(&c.w, want, st.ctx.Done(), func() error { return ContextStatus(st.ctx) })
			if err != nil {
				return err
			}
		}
		st.hmu.Lock()
		if st.finished {
			st.hmu.Unlock()
			if n > 0 {
				c.w.ReleaseParts()
			}
			return errStreamDone
		}
		b := c.w.Lock()
		sentHeader := !st.headerSent
		if sentHeader {
			if len(st.header) > 0 {
				st.appendHeaders(b)
			}
			st.headerSent = true
		}
		var fl wire.Flags
		if n < len(data) {
			fl = wire.FlagMore
		}
		*b = wire.AppendFrame(*b, st.id, wire.TypeMessage, fl, data[:n])
		err := c.w.Unlock()
		st.hmu.Unlock()
		data = data[n:]
		first = false
		if n > 0 && (len(data) == 0 || err != nil) {
			c.w.ReleaseParts()
		}
		if sentHeader {
			st.outHeader()
		}
		if err != nil {
			return status.Errorf(codes.Unavailable, "grpcipc: %v", err)
		}
	}
	return nil
}

func (st *serverStream) outPayload(m any, n int) {
	for _, h := range st.c.s.cfg.Stats {
		h.HandleRPC(st.ctx, &stats.OutPayload{Payload: m, Length: n, CompressedLength: n, WireLength: n + wire.HeaderSize, SentTime: time.Now()})
	}
}

// Context returns the call's context: it holds the caller's identity
// (peer.FromContext, AuthInfoFromContext), its metadata and deadline, and
// ends when the client cancels, the deadline passes or the connection
// closes.
func (st *serverStream) Context() context.Context { return st.ctx }

// SetHeader adds header metadata, sent with the first message or by
// SendHeader.
func (st *serverStream) SetHeader(md metadata.MD) error {
	st.hmu.Lock()
	defer st.hmu.Unlock()
	return st.addHeader(md, "grpcipc: SetHeader after the header was sent")
}

// addHeader adds md to the header not yet sent (hmu held), refusing, with
// tooLate once it was sent, and metadata that the client could not be
// sent: not gRPC's, or over the limit.
func (st *serverStream) addHeader(md metadata.MD, tooLate string) error {
	if st.headerSent || st.finished {
		return status.Error(codes.Internal, tooLate)
	}
	joined := metadata.Join(st.header, md)
	kv, err := toKV(joined, nil)
	if err != nil {
		return err
	}
	if err := st.c.headerErr(kv); err != nil {
		return err
	}
	st.header = joined
	return nil
}

// SendHeader sends the header metadata now.
func (st *serverStream) SendHeader(md metadata.MD) error {
	st.hmu.Lock()
	defer st.hmu.Unlock()
	if err := st.addHeader(md, "grpcipc: SendHeader called twice, or after the header was sent"); err != nil {
		return err
	}
	b := st.c.w.Lock()
	st.appendHeaders(b)
	err := st.c.w.Unlock()
	st.hmu.Unlock()
	st.outHeader()
	st.hmu.Lock() // for the deferred unlock
	return err
}

// SetTrailer adds trailer metadata, sent when the call ends.
func (st *serverStream) SetTrailer(md metadata.MD) {
	st.hmu.Lock()
	defer st.hmu.Unlock()
	if !st.finished {
		st.trailer = metadata.Join(st.trailer, md)
	}
}

// SendMsg sends a message to the client.
func (st *serverStream) SendMsg(m any) error {
	_, err := st.sendMessage(m, false)
	if errors.Is(err, errStreamDone) {
		return status.Error(codes.Internal, "grpcipc: SendMsg after the call ended")
	}
	return err
}

// RecvMsg receives the client's next message; io.EOF after its last.
func (st *serverStream) RecvMsg(m any) error {
	b, credit, err := st.in.Next(st.ctx.Done(), func() error { return ContextStatus(st.ctx) })
	if err != nil {
		return err
	}
	if b == nil {
		return io.EOF
	}
	err = unmarshal(*b, m)
	n := len(*b)
	fastio.PutBuf(b)
	if give := st.in.Taken(credit); give > 0 {
		st.c.window(st.id, give)
	}
	if err != nil {
		return status.Errorf(codes.Internal, "grpcipc: failed to unmarshal a message: %v", err)
	}
	st.inPayload(m, n)
	return nil
}

// transportStream is what grpc.SetHeader, SendHeader, SetTrailer and
// Method find in a fast-path handler's context.
type transportStream struct{ st *serverStream }

func (t *transportStream) Method() string                  { return t.st.method }
func (t *transportStream) SetHeader(md metadata.MD) error  { return t.st.SetHeader(md) }
func (t *transportStream) SendHeader(md metadata.MD) error { return t.st.SendHeader(md) }
func (t *transportStream) SetTrailer(md metadata.MD) error {
	t.st.SetTrailer(md)
	return nil
}
