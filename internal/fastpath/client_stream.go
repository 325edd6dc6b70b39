package fastpath

import (
	"context"
	"io"
	"os"
	"sync"

	"github.com/grpcipc/grpcipc/internal/fastio"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// clientStream is one call on the client's side of the fast path.
type clientStream struct {
	fc      *ClientConn
	id      uint32
	ctx     context.Context
	method  string
	desc    *grpc.StreamDesc // nil for a unary call
	maxRecv int
	maxSend int
	in      fastio.Inbox
	stop    func() bool // ends the watch of ctx

	hdr  chan struct{} // closed when the header is known (streams only)
	done chan struct{} // closed when the call has ended

	mu         sync.Mutex
	header     metadata.MD
	mdCost     int // the header and trailer, charged until the application learns the call's end
	hdrSeen    bool
	trailer    metadata.MD
	status     *status.Status
	halfClosed bool
	notStarted bool
	// sentTo: a unary call's whole request ends there in the writer's
	// stream (fastio.Writer.Mark), 0 for one sent in parts
	sentTo    uint64
	waiting   bool       // the caller waits in result for the end of the call
	woke      bool       // the end woke it: it counts in fc.wakes
	got       int        // messages received (streams)
	wantFiles bool       // the call takes files (ReceiveFilesOption)
	files     []*os.File // the files the server sent, until the call's end
	filesDone bool       // they were handed over (or closed)
}

// setHeader keeps the call's header, charged cost bytes, unless it has
// one or has ended.
func (st *clientStream) setHeader(md metadata.MD, cost int) {
	st.mu.Lock()
	if !st.hdrSeen && st.status == nil {
		st.header, st.hdrSeen, st.mdCost, cost = md, true, st.mdCost+cost, 0
		if st.hdr != nil {
			close(st.hdr)
		}
	}
	st.mu.Unlock()
	st.fc.budget.Release(cost)
}

// sawResponse: a message came, so the header (if any) came before it.
func (st *clientStream) sawResponse() {
	if st.hdr == nil {
		return
	}
	st.mu.Lock()
	if !st.hdrSeen {
		st.hdrSeen = true
		close(st.hdr)
	}
	st.mu.Unlock()
}

// end records the call's outcome, once.
func (st *clientStream) end(s *status.Status, trailer metadata.MD) { st.endCharged(s, trailer, 0) }

// endCharged records the call's outcome, once, with its trailer charged
// cost bytes: the header and trailer stay charged until the application
// learns of the end (finishCall) or cancels the call (abort).
func (st *clientStream) endCharged(s *status.Status, trailer metadata.MD, cost int) {
	st.mu.Lock()
	if st.status != nil {
		st.mu.Unlock()
		st.fc.budget.Release(cost)
		return
	}
	st.status, st.trailer = s, trailer
	st.mdCost += cost
	if st.waiting {
		// Its caller wakes: requests written meanwhile may wait for it
		// (ClientConn.wakes).
		st.woke = true
		st.fc.wakes.Add(1)
	}
	if !st.hdrSeen {
		st.hdrSeen = true
		if st.hdr != nil {
			close(st.hdr)
		}
	}
	st.mu.Unlock()
	if s.Code() == codes.OK {
		st.in.End(nil)
	} else {
		st.in.End(s.Err())
	}
	// Messages not yet taken stay charged until the application takes
	// them, or cancels the call, or ends it otherwise (a stream it
	// abandons without either holds its share, as it holds grpc-go's
	// resources).
	close(st.done)
}

// releaseMetadata gives back the header's and trailer's charge once the
// call has ended: the application has them now, or never will.
func (st *clientStream) releaseMetadata() {
	st.mu.Lock()
	cost := 0
	if st.status != nil {
		cost, st.mdCost = st.mdCost, 0
	}
	st.mu.Unlock()
	st.fc.budget.Release(cost)
}

// abort ends the call here and tells the server.
func (st *clientStream) abort(s *status.Status) {
	st.mu.Lock()
	ended := st.status != nil
	st.mu.Unlock()
	if ended {
		st.in.Drain() // what the application has yet to take: it never will
		st.releaseMetadata()
		return
	}
	b := st.fc.w.Lock()
	*b = wire.AppendFrame(*b, st.id, wire.TypeCancel, 0, nil)
	st.fc.w.Unlock()
	st.fc.remove(st)
	st.end(s, nil)
	st.in.Drain()
	st.releaseMetadata()
}

// result waits for the call's end, or its context's. A call that ended
// before its context's end could end it keeps its outcome, reply and all.
func (st *clientStream) result() *status.Status {
	st.mu.Lock()
	st.waiting = st.status == nil
	st.mu.Unlock()
	select {
	case <-st.done:
	case <-st.ctx.Done():
		st.cancel(status.Convert(ContextStatus(st.ctx)))
	}
	st.mu.Lock()
	s, woke := st.status, st.woke
	st.waiting, st.woke = false, false
	st.mu.Unlock()
	if woke {
		st.fc.woken()
	}
	return s
}

// cancel ends the call with s, its context's status, and tells the
// server, unless the call has ended: then its outcome stands (abort would
// drop a reply that came with its end).
func (st *clientStream) cancel(s *status.Status) {
	st.mu.Lock()
	ended := st.status != nil
	st.mu.Unlock()
	if ended {
		return
	}
	b := st.fc.w.Lock()
	*b = wire.AppendFrame(*b, st.id, wire.TypeCancel, 0, nil)
	st.fc.w.Unlock()
	st.fc.remove(st)
	st.end(s, nil)
	st.mu.Lock()
	won := st.status == s
	st.mu.Unlock()
	if won {
		st.in.Drain()
		st.releaseMetadata()
	}
}

// invoke makes a unary call on the fast path.
func (fc *ClientConn) Invoke(ctx context.Context, method string, req, reply any, ci *CallInfo) error {
	st, sent, err := fc.open(ctx, method, ci, nil, req)
	if err != nil {
		return err
	}
	if sent {
		fc.await(st) // reads for itself when alone
	} else {
		// Sent in parts, as the server's windows allow: another reads.
		// io.EOF: the call ended while the request went out; its
		// outcome (a reply, too) is read below.
		fc.ensureReader()
		if err := st.sendMsg(req); err == nil {
			st.closeSend()
		} else if err != io.EOF {
			st.abort(status.Convert(err))
			return st.finishCall(ci, err)
		}
	}
	s := st.result()
	if s.Code() != codes.OK {
		st.in.Drain()
		st.mu.Lock()
		notStarted := st.notStarted
		st.mu.Unlock()
		if s.Code() == codes.Unavailable && st.sentTo > 0 && fc.isClosed() {
			// The connection closed: what waits in the writer never goes
			// out (the Flush fails and drops it). A request that waited
			// there (another caller wrote it, or was to) and never went
			// out whole was not read: the server could not run the call.
			// One that a write took may have been read, and answered
			// UNAVAILABLE by its handler, while the write went on.
			fc.w.Flush()
			if fc.w.Unsent(st.sentTo) {
				notStarted = true
			}
		}
		if notStarted {
			st.releaseMetadata() // a header that came first: the retry has its own
			return ErrNotStarted
		}
		return st.finishCall(ci, preferContext(ctx, s.Err()))
	}
	b, _, err := st.in.Next(nil, nil)
	if err != nil {
		return st.finishCall(ci, err)
	}
	if b == nil {
		return st.finishCall(ci, status.Error(codes.Internal, "grpcipc: cardinality violation: the server sent no response message"))
	}
	err = unmarshal(*b, reply)
	fastio.PutBuf(b)
	st.in.Drain()
	if err != nil {
		err = status.Errorf(codes.Internal, "grpcipc: failed to unmarshal the response: %v", err)
	}
	return st.finishCall(ci, err)
}

// finishCall fills the call options' header, trailer and peer, and
// hands over the files the server sent.
func (st *clientStream) finishCall(ci *CallInfo, err error) error {
	if st.wantFiles {
		st.handFiles(ci.receive)
	}
	if ci.header != nil || ci.trailer != nil {
		st.mu.Lock()
		if ci.header != nil {
			*ci.header = st.header
			if *ci.header == nil {
				*ci.header = metadata.MD{}
			}
		}
		if ci.trailer != nil {
			*ci.trailer = st.trailer
			if *ci.trailer == nil {
				*ci.trailer = metadata.MD{}
			}
		}
		st.mu.Unlock()
	}
	if ci.peer != nil {
		*ci.peer = st.fc.peer
	}
	st.releaseMetadata()
	return err
}

// sendMsg sends one message, part by part as the window allows.
func (st *clientStream) sendMsg(m any) error {
	size := messageSize(m)
	if size > st.maxSend {
		return status.Errorf(codes.ResourceExhausted, "grpcipc: trying to send message larger than max (%d vs. %d)", size, st.maxSend)
	}
	fc := st.fc
	if size >= 0 && size <= maxFramePayload && st.in.TryReserve(size) {
		b := fc.w.Lock()
		if st.sendDone() {
			fc.w.Release()
			return io.EOF
		}
		mark := len(*b)
		var at int
		*b, at = wire.BeginFrame(*b, st.id, wire.TypeMessage, 0)
		var err error
		if *b, err = marshal(*b, m); err != nil {
			*b = (*b)[:mark]
			fc.w.Unlock()
			return status.Errorf(codes.Internal, "grpcipc: failed to marshal the request: %v", err)
		}
		wire.EndFrame(*b, at)
		if err := fc.w.Unlock(); err != nil {
			fc.writeFailed()
		}
		return nil
	}
	buf := fastio.GetBuf()
	defer fastio.PutBuf(buf)
	var err error
	if *buf, err = marshal(*buf, m); err != nil {
		return status.Errorf(codes.Internal, "grpcipc: failed to marshal the request: %v", err)
	}
	if len(*buf) > st.maxSend {
		return status.Errorf(codes.ResourceExhausted, "grpcipc: trying to send message larger than max (%d vs. %d)", len(*buf), st.maxSend)
	}
	data := *buf
	if len(data) > 0 {
		if !fc.w.AcquireParts(st.done) {
			return io.EOF
		}
	}
	first := true
	for first || len(data) > 0 {
		n := 0
		if len(data) > 0 {
			if n, err = st.in.ReservePart(&fc.w, min(len(data), maxFramePayload), st.done, func() error { return io.EOF }); err != nil {
				return io.EOF // the call ended: RecvMsg tells how
			}
		}
		b := fc.w.Lock()
		if st.sendDone() {
			fc.w.Release()
			if n > 0 {
				fc.w.ReleaseParts()
			}
			return io.EOF
		}
		var fl wire.Flags
		if n < len(data) {
			fl = wire.FlagMore
		}
		*b = wire.AppendFrame(*b, st.id, wire.TypeMessage, fl, data[:n])
		werr := fc.w.Unlock()
		data = data[n:]
		first = false
		if n > 0 && (len(data) == 0 || werr != nil) {
			fc.w.ReleaseParts()
		}
		if werr != nil {
			fc.writeFailed()
			return io.EOF
		}
	}
	return nil
}

// sendDone: the call ended or the client half-closed (under the writer's
// lock).
func (st *clientStream) sendDone() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.status != nil || st.halfClosed
}

// closeSend sends HALF_CLOSE, once.
func (st *clientStream) closeSend() {
	b := st.fc.w.Lock()
	if st.sendDone() {
		st.fc.w.Release()
		return
	}
	st.mu.Lock()
	st.halfClosed = true
	st.mu.Unlock()
	*b = wire.AppendFrame(*b, st.id, wire.TypeHalfClose, 0, nil)
	if err := st.fc.w.Unlock(); err != nil {
		st.fc.writeFailed()
	}
}

// NewStream starts a streaming call of method on the connection
// (ErrNotStarted: the server is going away and did not start it; the
// caller may retry on a new connection). The call ends at once when ctx
// does.
func (fc *ClientConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, ci *CallInfo) (grpc.ClientStream, error) {
	st, _, err := fc.open(ctx, method, ci, desc, nil)
	if err != nil {
		return nil, err
	}
	fc.ensureReader()
	st.stop = context.AfterFunc(ctx, func() { st.abort(status.Convert(ContextStatus(ctx))) })
	return &fastStream{st: st, ci: *ci}, nil
}

// fastStream is a streaming call on the fast path: a grpc.ClientStream.
type fastStream struct {
	st *clientStream
	ci CallInfo
}

// Header waits for the server's header metadata.
func (s *fastStream) Header() (metadata.MD, error) {
	select {
	case <-s.st.hdr:
	case <-s.st.ctx.Done():
		return nil, ContextStatus(s.st.ctx)
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if s.st.header == nil && s.st.status != nil && s.st.status.Code() != codes.OK {
		return nil, s.st.status.Err()
	}
	if s.st.header == nil {
		return metadata.MD{}, nil
	}
	return s.st.header, nil
}

// Trailer returns the trailer metadata once the call has ended.
func (s *fastStream) Trailer() metadata.MD {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.trailer
}

// CloseSend tells the server that no more messages come.
func (s *fastStream) CloseSend() error {
	if s.ctxEnded() {
		return nil // RecvMsg tells how the call ended
	}
	s.st.closeSend()
	return nil
}

// ctxEnded ends the call at once when its context has ended, so that
// what follows a cancel sees it, whatever the server has sent meanwhile.
func (s *fastStream) ctxEnded() bool {
	if s.st.ctx.Err() == nil {
		return false
	}
	s.st.abort(status.Convert(ContextStatus(s.st.ctx)))
	return true
}

// Context returns the call's context.
func (s *fastStream) Context() context.Context { return s.st.ctx }

// SendMsg sends a message; io.EOF when the call has ended (RecvMsg says
// how).
func (s *fastStream) SendMsg(m any) error {
	if s.ctxEnded() || s.st.sendDone() {
		return io.EOF
	}
	err := s.st.sendMsg(m)
	if err != nil && status.Code(err) == codes.ResourceExhausted {
		s.st.abort(status.Convert(err))
	}
	return err
}

// RecvMsg receives the next message; io.EOF after the last of a call that
// ended well, the call's status otherwise.
func (s *fastStream) RecvMsg(m any) error {
	st := s.st
	s.ctxEnded()
	b, credit, err := st.in.Next(nil, nil)
	if err == nil && b != nil {
		uerr := unmarshal(*b, m)
		fastio.PutBuf(b)
		if give := st.in.Taken(credit); give > 0 {
			st.fc.window(st.id, give)
		}
		if uerr != nil {
			st.abort(status.Newf(codes.Internal, "grpcipc: failed to unmarshal a message: %v", uerr))
			return s.finish(status.Errorf(codes.Internal, "grpcipc: failed to unmarshal a message: %v", uerr))
		}
		st.got++
		if s.st.desc.ServerStreams {
			return nil
		}
		// One message only: read on to the end for the status.
		b2, _, err2 := st.in.Next(nil, nil)
		if b2 != nil {
			fastio.PutBuf(b2)
			st.abort(status.New(codes.Internal, "grpcipc: cardinality violation: more than one response message"))
			return s.finish(status.Error(codes.Internal, "grpcipc: cardinality violation: more than one response message"))
		}
		if err2 != nil {
			return s.finish(err2)
		}
		s.finish(nil)
		return nil
	}
	if err != nil {
		return s.finish(err)
	}
	if !s.st.desc.ServerStreams && st.got == 0 {
		return s.finish(status.Error(codes.Internal, "grpcipc: cardinality violation: the server sent no response message"))
	}
	return s.finish(io.EOF)
}

// finish ends the watch of the context once the call has ended, and fills
// the call options.
func (s *fastStream) finish(err error) error {
	s.st.stop()
	if err != io.EOF {
		err = preferContext(s.st.ctx, err)
	}
	return s.st.finishCall(&s.ci, err)
}
