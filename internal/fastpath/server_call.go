package fastpath

// A CALL frame on the server: the call's stream opened (its metadata
// charged, the policy asked, its files attached, its handler started), or
// the call refused with TRAILERS while the connection reads on.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// onCall opens a stream of CALL payload p, of which held bytes are
// charged to the budget already (a CALL put together from parts), with
// the descriptors a FILES frame sent for it.
func (c *serverConn) onCall(id uint32, fl wire.Flags, p []byte, held int) error {
	pf, err := c.pendingFor(id)
	if err != nil {
		c.budget.Release(held)
		return err
	}
	if pf == nil {
		return c.openCall(id, fl, p, held, nil)
	}
	err = c.openCall(id, fl, p, held, pf)
	c.dropPending(pf) // the call never came as far as taking them
	return err
}

// openCall opens a stream of CALL payload p with flags fl, of which held
// bytes are charged to the budget already, with the descriptors pf (nil:
// none) that a FILES frame sent for it, which it takes over once the
// call may have them.
func (c *serverConn) openCall(id uint32, fl wire.Flags, p []byte, held int, pf *pendingFiles) error {
	// The call's metadata is held as long as the call: it is charged to
	// the budget like messages, before it is parsed and before anyone
	// else can see the stream.
	entries := wire.Entries(wire.TypeCall, p)
	if entries > wire.MaxHeaderListSize/32 {
		c.budget.Release(held)
		return c.refuseLimit(id, &wire.LimitError{What: "metadata entries", N: uint64(entries), Max: wire.MaxHeaderListSize / 32})
	}
	cost := callCost(len(p), entries)
	if int64(cost) > c.budget.Limit() {
		c.budget.Release(held)
		return c.refuseCall(id, codes.ResourceExhausted, fmt.Sprintf("grpcipc: call refused: its metadata (%d entries, %d bytes) would hold %d bytes, more than the connection's memory budget (%d bytes)", entries, len(p), cost, c.budget.Limit()))
	}
	charged := true
	if held >= cost {
		c.budget.Release(held - cost)
	} else if !c.charge(cost - held) {
		c.budget.Release(held)
		charged = false
	}
	var call wire.Call
	var err error
	if charged {
		call, err = wire.ParseCallInterned(p, c.s.intern)
	} else {
		// No room: the call is refused, its metadata not read.
		call.Method, err = wire.CallMethod(p)
	}
	if err != nil {
		if charged {
			c.budget.Release(cost)
		}
		var le *wire.LimitError
		if errors.As(err, &le) {
			// Well formed but over a limit: the frame was read whole, so
			// the call is refused and the connection reads on.
			return c.refuseLimit(id, le)
		}
		return err
	}
	st := &serverStream{c: c, id: id, method: call.Method, m: c.s.methods[call.Method], takesFiles: fl&wire.FlagFiles != 0 && c.files != nil}
	st.in.Init(c.budget, st.m != nil && (st.m.md != nil || !st.m.sd.ClientStreams), c, id)
	md := fromKV(call.Metadata)
	st.cctx.parent = c.noMetadata // the incoming metadata of a call that has none: made once
	if md != nil {
		st.cctx.parent = metadata.NewIncomingContext(c.values, md)
	}
	st.sts.st = st
	st.cctx.parent = grpc.NewContextWithServerTransportStream(st.cctx.parent, &st.sts)
	if call.Timeout > 0 {
		st.cctx.setDeadline(call.Timeout)
	}
	var ctx context.Context = &st.cctx
	st.ctx = ctx
	if charged {
		st.charged = cost
	}
	notStarted := func() {
		st.cancel()
		c.budget.Release(st.charged)
	}
	// One locked section: a GOAWAY names the last stream started, and
	// every stream up to it is started.
	c.mu.Lock()
	if id <= c.seen {
		c.mu.Unlock()
		notStarted()
		return fmt.Errorf("%w: CALL on stream %d after stream %d: streams must increase", wire.ErrProtocol, id, c.seen)
	}
	c.seen = id
	if c.goingAway || c.closed {
		c.mu.Unlock()
		notStarted()
		return nil // not started (above the GOAWAY's last stream): the client retries it
	}
	if len(c.streams) >= MaxStreams {
		c.mu.Unlock()
		notStarted()
		return fmt.Errorf("%w: more than %d streams open at once", wire.ErrProtocol, MaxStreams)
	}
	c.last = id
	c.streams[id] = st
	c.handlers.Add(1)
	c.mu.Unlock()
	if err := c.caller.Authorize(call.Method); err != nil {
		// Refused before stats handlers hear of the call, as on HTTP/2,
		// where the policy's tap refuses it before grpc-go makes a stream.
		st.unseen = true
		st.fail(err)
		return nil
	}
	if pf != nil && !c.attachFiles(st, pf) {
		return nil
	}
	if hs := c.s.cfg.Stats; len(hs) > 0 {
		st.begin = time.Now()
		for _, h := range hs {
			ctx = h.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: call.Method})
		}
		for _, h := range hs {
			h.HandleRPC(ctx, &stats.InHeader{
				FullMethod: call.Method, RemoteAddr: c.conn.RemoteAddr(), LocalAddr: c.conn.LocalAddr(),
				Header: md, WireLength: len(p),
			})
		}
		cs, ss := false, false
		if st.m != nil && st.m.sd != nil {
			cs, ss = st.m.sd.ClientStreams, st.m.sd.ServerStreams
		}
		for _, h := range hs {
			h.HandleRPC(ctx, &stats.Begin{BeginTime: st.begin, IsClientStream: cs, IsServerStream: ss})
		}
		st.ctx = ctx
	}

	if !charged {
		c.logBudget()
		st.fail(status.Error(codes.ResourceExhausted, c.budgetMessage()))
		return nil
	}
	if st.m == nil {
		st.fail(c.s.Unimplemented(call.Method))
		return nil
	}
	st.ready.Store(true)
	if st.m.sd != nil {
		c.s.workers.run(st)
	}
	return nil
}

// refuseLimit refuses stream id, whose CALL payload is over a limit: a
// method name too long for any method this server could have is
// UNIMPLEMENTED, metadata over its limit INTERNAL (grpc-go's code for a
// header list over its peer's limit).
func (c *serverConn) refuseLimit(id uint32, le *wire.LimitError) error {
	code, msg := codes.Internal, fmt.Sprintf("grpcipc: call refused: request %s %d, over the fast path's limit (%d)", le.What, le.N, le.Max)
	if le.What == "method name" {
		code, msg = codes.Unimplemented, fmt.Sprintf("grpcipc: call refused: a method name of %d bytes, over the fast path's limit (%d bytes)", le.N, le.Max)
	}
	return c.refuseCall(id, code, msg)
}

// refuseCall ends stream id, whose CALL the server read whole but will
// not start, with TRAILERS of code and msg. The stream is never started;
// its later frames are ignored.
func (c *serverConn) refuseCall(id uint32, code codes.Code, msg string) error {
	c.mu.Lock()
	if id <= c.seen {
		c.mu.Unlock()
		return fmt.Errorf("%w: CALL on stream %d after stream %d: streams must increase", wire.ErrProtocol, id, c.seen)
	}
	c.seen = id
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil
	}
	b := c.w.Lock()
	*b, _ = beginFrameWith(*b, id, wire.TypeTrailers, 0, func(b []byte) []byte {
		return wire.AppendTrailer(b, &wire.Trailer{Code: uint32(code), Message: msg})
	})
	c.w.Unlock()
	return nil
}
