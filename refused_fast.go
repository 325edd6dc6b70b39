package grpcipc

import (
	"bytes"
	"io"
	"net"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/codes"
)

// A refused connection (the policy admits its caller to no method) hears
// its refusal in the protocol it speaks: HTTP/2 clients from the refusal
// server (refuser), grpcipc clients, which offer the fast path first, on
// the fast path, so that they connect once and the refusal is logged once.
// Whichever it is, the connection is bounded as in [refusalLimits]: it is
// closed by refusalDeadline after it was accepted, and the fast path
// answers at most refusedCalls calls with small fixed buffers, decoding
// no payload.

// refusedCalls is how many calls a refused fast-path connection has
// answered before it is told to go away.
const refusedCalls = 16

// refusedGoAwayMargin is the part of refusalDeadline kept for the GOAWAY
// that ends a refused fast-path connection.
const refusedGoAwayMargin = refusalDeadline / 10

// sniffRefused reads a refused connection's first bytes (its deadline is
// set). fast says a grpcipc client offered the fast path, in version,
// and rest holds what it sent after its offer; otherwise, if ok, what was
// read is left in pc.pending for the HTTP/2 refusal. !ok: the connection
// is of no use (closed, silent, or a broken preface) and should be closed.
func sniffRefused(pc *peerConn) (fast bool, version uint8, rest []byte, ok bool) {
	f := sniff(pc.Conn)
	switch {
	case len(f.read) == 0 || f.broken:
		return false, 0, nil, false
	case !f.fast && f.err != nil:
		// HTTP/2's preface stopped short by the deadline: the refusal
		// server's handshake would give it as long again.
		return false, 0, nil, false
	case f.fast:
		return true, f.version, f.rest, true
	}
	pc.pending = f.read
	return false, 0, nil, true
}

// answerRefusedFast speaks the fast path to a refused grpcipc client: its
// preface, then TRAILERS with PermissionDenied and the text the HTTP/2
// refusal carries (a [RefusedError] without a method) for every call it
// opens, until it hangs up, it has opened refusedCalls calls, it breaks
// the protocol or the connection's deadline nears; then a GOAWAY (calls
// it opened after the last one answered are retried, and refused, on a
// new connection). Payloads are skipped unread, through io.Discard's pooled
// 8 KiB buffers (256 bytes a read cost 7 times the CPU a byte of HTTP/2's
// refusal).
// The caller closes the connection.
func answerRefusedFast(conn net.Conn, rest []byte, caller *Creds, version uint8, end time.Time) {
	readUntil := end.Add(-refusedGoAwayMargin)
	conn.SetReadDeadline(readUntil)
	conn.SetWriteDeadline(readUntil)
	msg := (&RefusedError{Caller: caller.String()}).Error()
	out := wire.AppendPreface(make([]byte, 0, 128+len(msg)), version)
	if _, err := conn.Write(out); err != nil {
		return
	}
	var in io.Reader = conn
	if len(rest) > 0 {
		in = io.MultiReader(bytes.NewReader(rest), conn)
	}
	var (
		hdr     [wire.HeaderSize]byte
		scratch [256]byte
		last    uint32
		more    bool // the last CALL continues in the next
	)
loop:
	for calls := 0; calls < refusedCalls; {
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			if err == io.EOF {
				return // the client hung up between frames: nothing to say
			}
			break
		}
		h, err := wire.ParseHeader(hdr[:])
		if err != nil || h.Length > wire.DefaultMaxFrame {
			break
		}
		// Payloads are skipped; only a PING's 8 bytes are kept.
		var p []byte
		if h.Length <= uint32(len(scratch)) {
			if _, err := io.ReadFull(in, scratch[:h.Length]); err != nil {
				break
			}
			p = scratch[:h.Length]
		} else if _, err := io.CopyN(io.Discard, in, int64(h.Length)); err != nil {
			break // io.Discard reads through pooled 8 KiB buffers
		}
		out = out[:0]
		switch h.Type {
		case wire.TypeCall:
			if h.Stream == last && more {
				more = h.Flags&wire.FlagMore != 0 // the rest of the CALL in parts
				continue
			}
			if h.Stream == 0 || h.Stream <= last {
				break loop // streams must increase
			}
			last, more = h.Stream, h.Flags&wire.FlagMore != 0
			calls++
			out, _ = beginFrameWith(out, h.Stream, wire.TypeTrailers, 0, func(b []byte) []byte {
				return wire.AppendTrailer(b, &wire.Trailer{Code: uint32(codes.PermissionDenied), Message: msg})
			})
		case wire.TypePing:
			if h.Flags&wire.FlagAck == 0 && len(p) == 8 {
				out = wire.AppendFrame(out, 0, wire.TypePing, wire.FlagAck, p)
			}
		}
		if len(out) > 0 {
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
	}
	conn.SetWriteDeadline(end)
	out, _ = beginFrameWith(out[:0], 0, wire.TypeGoAway, 0, func(b []byte) []byte {
		return wire.AppendGoAway(b, &wire.GoAway{LastStream: last, Code: uint32(codes.PermissionDenied), Message: msg})
	})
	conn.Write(out)
}
