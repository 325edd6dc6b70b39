package fastpath

import (
	"bytes"
	"io"
	"net"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/codes"
)

// A refused connection (the policy admits its caller to no method) hears
// its refusal in the protocol it speaks: HTTP/2 clients from the root's
// refusal server, grpcipc clients, which offer the fast path first, on
// the fast path, so that they connect once and the refusal is logged once.
// The root bounds the connection's time; the fast path answers at most
// refusedCalls calls with small fixed buffers, decoding no payload.

// refusedCalls is how many calls a refused fast-path connection has
// answered before it is told to go away.
const refusedCalls = 16

// AnswerRefused speaks the fast path to a refused grpcipc client, which
// offered version of it and sent rest after its offer: the server's
// preface, then TRAILERS with PermissionDenied and msg (the text the
// HTTP/2 refusal carries) for every call it opens, until it hangs up, it
// has opened refusedCalls calls, it breaks the protocol or readUntil
// passes; then a GOAWAY, written by end (calls it opened after the last
// one answered are retried, and refused, on a new connection). Payloads
// are skipped unread, through io.Discard's pooled 8 KiB buffers (256
// bytes a read cost 7 times the CPU a byte of HTTP/2's refusal). The
// caller closes the connection.
func AnswerRefused(conn net.Conn, rest []byte, version uint8, msg string, readUntil, end time.Time) {
	conn.SetReadDeadline(readUntil)
	conn.SetWriteDeadline(readUntil)
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
