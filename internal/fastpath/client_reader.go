package fastpath

// Who reads a client connection's frames (docs/protocol.md, "Who reads").
//
// A goroutine that hands a frame to another costs a wake-up, and on a
// machine with idle CPUs the Go scheduler starts a thread to look for the
// woken goroutine: that, not the framing, was most of a unary call's time
// on the fast path. So the reader role moves: a unary call that is alone
// on its connection, whose request went out whole with its CALL, reads its
// own reply (it leads); otherwise a background goroutine reads, as it
// always did, and hands each frame to its call. Exactly one goroutine
// holds the role at a time, or none while no call is in flight.
//
//   - A leader reads only its own call's frames and the connection's own
//     (GOAWAY, windows, frames of calls that ended). The first frame of
//     another call in flight, a PING or a reply in parts (what they make a
//     reader write could wait for a server that stops reading), goes to a
//     background reader started for it, and the leader
//     waits for its reply as any other call does. A frame of its own call
//     that waits for room in the memory budget stops waiting when the
//     call's context ends.
//   - A leader whose context ends stops at once: a read deadline in the
//     past ends its read (wire.Reader resumes a frame cut short), and a
//     background reader reads on if any call or part of a frame needs it.
//   - Whoever reads an error closes the connection, which fails every call
//     in flight with UNAVAILABLE, as before.
//   - The background reader stops once no call is in flight and nothing
//     is buffered, so that the next call can lead. A connection left with
//     no reader is watched again after idleWatch without a call: a server
//     that closes an idle connection or sends GOAWAY is seen within two of
//     them; a call that starts on such a connection before then finds its
//     write refused, or the GOAWAY, and is retried on a new one
//     (ErrNotStarted).

import (
	"bufio"
	"context"
	"errors"
	"os"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
)

// readRole says who holds the reader role.
type readRole uint8

const (
	roleNone       readRole = iota // no call in flight, nobody reads
	roleLeader                     // a unary call reads for itself (fc.leader)
	roleBackground                 // the background reader
)

// idleWatch: a connection with no reader and no call for this long gets
// its background reader back.
const idleWatch = 20 * time.Millisecond

// aLongTimeAgo is a read deadline that has passed: it ends a leader's read.
var aLongTimeAgo = time.Unix(1, 0)

// read is the background reader: it handles first (if given: the frame a
// leader handed over) and reads on until the connection ends or no call
// needs it.
func (fc *ClientConn) read(first wire.Header, p []byte, handed bool) {
	if handed {
		if err := fc.frame(first, p); err != nil {
			fc.readFailed(err)
			return
		}
		if fc.retire() {
			return
		}
	}
	for {
		h, p, err := fc.r.Next()
		if err == nil {
			err = fc.frame(h, p)
		}
		if err != nil {
			fc.readFailed(err)
			return
		}
		if fc.retire() {
			return
		}
	}
}

// readFailed ends the connection after a read or a frame failed (the
// reader role's).
func (fc *ClientConn) readFailed(err error) {
	fc.Close(err)
	fc.blk.Drop()
	fc.rmu.Lock()
	fc.role = roleNone
	fc.rmu.Unlock()
}

// retire stops the background reader when no call is in flight and no
// frame has begun: the next unary call reads for itself.
func (fc *ClientConn) retire() bool {
	if fc.br.Buffered() > 0 || fc.r.InFrame() {
		return false
	}
	fc.rmu.Lock()
	defer fc.rmu.Unlock()
	fc.mu.Lock()
	busy := len(fc.streams) > 0
	fc.mu.Unlock()
	if busy {
		return false
	}
	fc.role = roleNone
	fc.armIdle()
	return true
}

// startReader starts the background reader (fc.rmu held).
func (fc *ClientConn) startReader(h wire.Header, p []byte, handed bool) {
	fc.role = roleBackground
	go fc.read(h, p, handed)
}

// ensureReader makes sure someone reads, for a call that does not lead (a
// stream; a request sent in parts, which needs the server's windows).
func (fc *ClientConn) ensureReader() {
	fc.rmu.Lock()
	if fc.role == roleNone && !fc.isClosed() {
		fc.startReader(wire.Header{}, nil, false)
	}
	fc.rmu.Unlock()
}

func (fc *ClientConn) isClosed() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.err != nil
}

// await waits for unary call st to end: it reads the connection itself
// when nobody does and st is alone on it, else another reader hands it its
// frames. result says how it ended.
func (fc *ClientConn) await(st *clientStream) {
	fc.rmu.Lock()
	if fc.role != roleNone {
		fc.rmu.Unlock()
		return
	}
	fc.mu.Lock()
	alone := fc.err == nil && len(fc.streams) == 1 && fc.streams[st.id] == st
	others := fc.err == nil && len(fc.streams) > 0
	fc.mu.Unlock()
	if !alone {
		if others {
			fc.startReader(wire.Header{}, nil, false)
		}
		fc.rmu.Unlock()
		return
	}
	fc.role, fc.leader = roleLeader, st
	fc.leadDone = st.ctx.Done()
	fc.leads++
	fc.watchContext(st.ctx)
	fc.rmu.Unlock()
	fc.lead(st)
}

// lead reads the connection for st until it ends, its context does, or a
// frame needs another reader.
func (fc *ClientConn) lead(st *clientStream) {
	var (
		handH  wire.Header
		handP  []byte
		handed bool
	)
	for !fc.ended(st) || fc.frameBuffered() {
		if closed(fc.leadDone) {
			break
		}
		h, p, err := fc.r.Next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && fc.wasInterrupted() {
				break // st's context ended: result ends the call
			}
			fc.readFailed(err)
			fc.rmu.Lock()
			fc.clearLeader()
			fc.rmu.Unlock()
			return
		}
		if !fc.mayLead(st, h) {
			handH, handP, handed = h, p, true
			break
		}
		if err := fc.frame(h, p); err != nil {
			fc.readFailed(err)
			fc.rmu.Lock()
			fc.clearLeader()
			fc.rmu.Unlock()
			return
		}
	}
	fc.rmu.Lock()
	fc.clearLeader()
	fc.mu.Lock()
	others := len(fc.streams)
	if fc.streams[st.id] == st {
		others-- // ended by result, at once
	}
	closed := fc.err != nil
	fc.mu.Unlock()
	switch {
	case closed:
		fc.role = roleNone
	case handed || others > 0 || fc.r.InFrame() || fc.br.Buffered() > 0:
		fc.startReader(handH, handP, handed)
	default:
		fc.role = roleNone
		fc.armIdle()
	}
	fc.rmu.Unlock()
}

// clearLeader ends a leader's turn (fc.rmu held): a read deadline set to
// stop it is cleared before anyone reads again.
func (fc *ClientConn) clearLeader() {
	if fc.interrupted {
		fc.conn.SetReadDeadline(time.Time{})
		fc.interrupted = false
	}
	fc.leader, fc.leadDone = nil, nil
}

// watchContext makes sure that the end of ctx, a leader's, stops its read
// (fc.rmu held). The watch is kept for the calls that follow with a
// context that ends with the same Done (most share one), so that a call
// allocates no watch of its own.
func (fc *ClientConn) watchContext(ctx context.Context) {
	done := ctx.Done()
	if done == nil || done == fc.watchDone {
		return
	}
	if fc.watchStop != nil {
		fc.watchStop()
	}
	fc.watchDone = done
	fc.watchStop = context.AfterFunc(ctx, func() { fc.interrupt(done) })
}

// interrupt stops the leader's read if the context that ended (its Done
// is done) is the leader's.
func (fc *ClientConn) interrupt(done <-chan struct{}) {
	fc.rmu.Lock()
	if fc.role == roleLeader && fc.leadDone == done && !fc.interrupted {
		fc.interrupted = true
		fc.conn.SetReadDeadline(aLongTimeAgo)
	}
	fc.rmu.Unlock()
}

func (fc *ClientConn) wasInterrupted() bool {
	fc.rmu.Lock()
	defer fc.rmu.Unlock()
	return fc.interrupted
}

// ended says whether st has ended.
func (fc *ClientConn) ended(st *clientStream) bool { return closed(st.done) }

// closed says whether ch (which may be nil) is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// frameBuffered says whether a whole frame is buffered and none begun,
// so that reading it cannot wait.
func (fc *ClientConn) frameBuffered() bool { return wholeFrameBuffered(fc.br, fc.r) }

// wholeFrameBuffered says whether a whole frame is buffered in br and r
// has begun none, so that reading it cannot wait.
func wholeFrameBuffered(br *bufio.Reader, r *wire.Reader) bool {
	n := br.Buffered()
	if n < wire.HeaderSize || r.InFrame() {
		return false
	}
	b, err := br.Peek(wire.HeaderSize)
	if err != nil {
		return false
	}
	h, err := wire.ParseHeader(b)
	return err == nil && n >= wire.HeaderSize+int(h.Length)
}

// mayLead says whether leader st may handle frame h itself: frames of its
// own call and of the connection, but for a PING and a message in parts
// (what they make it write could wait for the writer), and the frames of
// other calls in flight.
func (fc *ClientConn) mayLead(st *clientStream, h wire.Header) bool {
	switch {
	case h.Type == wire.TypePing:
		return false
	case h.Type == wire.TypeMessage && h.Flags&wire.FlagMore != 0:
		// A reply in parts is given back window by window: those writes
		// could wait for a server that stops reading, where no read
		// deadline would reach the leader.
		return false
	case h.Stream == st.id || h.Stream == 0:
		return true
	}
	other := fc.stream(h.Stream)
	return other == nil // a call that ended: its frames are dropped
}

// armIdle watches a connection that no one reads (fc.rmu held): after
// idleWatch with no call, its background reader starts again.
func (fc *ClientConn) armIdle() {
	if fc.idleArmed {
		return
	}
	fc.idleArmed = true
	if fc.idle == nil {
		fc.idle = time.AfterFunc(idleWatch, fc.watchIdle)
	} else {
		fc.idle.Reset(idleWatch)
	}
}

// watchIdle runs every idleWatch while the connection has no background
// reader: once a whole period passed with no call leading, the background
// reader starts, to see what the server sends (GOAWAY, the end).
func (fc *ClientConn) watchIdle() {
	fc.rmu.Lock()
	defer fc.rmu.Unlock()
	switch {
	case fc.isClosed() || fc.role != roleNone:
		// Someone reads; a leader's end arms the watch again.
		fc.idleArmed = false
	case fc.leads == fc.leadsSeen:
		fc.idleArmed = false
		fc.startReader(wire.Header{}, nil, false)
	default:
		fc.leadsSeen = fc.leads
		fc.idle.Reset(idleWatch)
	}
}
