package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/wire"
)

// SayHelloMethod is greet.Greeter's SayHello, as a fast-path CALL names it.
const SayHelloMethod = "/greet.Greeter/SayHello"

// RawFast is a fast-path connection spoken by hand: the prefaces have
// been exchanged.
type RawFast struct {
	C      *net.UnixConn
	R      *wire.Reader // the server's frames
	Frames []wire.Type  // what the server sent
	GoAway *wire.GoAway // the server's GOAWAY, if it sent one
}

// DialFast connects to endpoint, sends a client's offer (version 2's:
// an HTTP/2 preface whose SETTINGS offer the fast path) and reads the
// server's preface.
func DialFast(t *testing.T, endpoint string) *RawFast {
	t.Helper()
	return DialFastWith(t, endpoint, wire.AppendOffer(nil, wire.Version), wire.Version)
}

// DialFastWith connects to endpoint, sends offer and reads the server's
// preface, which must be of version want.
func DialFastWith(t *testing.T, endpoint string, offer []byte, want uint8) *RawFast {
	t.Helper()
	c := RawConn(t, endpoint).(*net.UnixConn)
	if _, err := c.Write(offer); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got [wire.PrefaceSize]byte
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(br, got[:]); err != nil {
		t.Fatalf("reading the server's preface: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	if want := wire.AppendPreface(nil, want); !bytes.Equal(got[:], want) {
		t.Fatalf("the server's preface is %q, want %q", got, want)
	}
	return &RawFast{C: c, R: wire.NewReader(br, wire.DefaultMaxFrame)}
}

// RawFrame is a frame of type typ on stream, with flags and payload.
func RawFrame(stream uint32, typ wire.Type, flags wire.Flags, payload []byte) []byte {
	return append(wire.AppendHeader(nil, wire.Header{Length: uint32(len(payload)), Stream: stream, Type: typ, Flags: flags}), payload...)
}

// RawCall is a CALL of SayHello on stream.
func RawCall(stream uint32) []byte {
	return RawFrame(stream, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: SayHelloMethod}))
}

// RawCallTo is a CALL of method on stream, with metadata md.
func RawCallTo(stream uint32, method string, md ...wire.KV) []byte {
	return RawFrame(stream, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: method, Metadata: md}))
}

// PartsOf is a frame of type t on stream with payload p, cut into parts
// (FlagMore) of at most a frame's payload each.
func PartsOf(stream uint32, t wire.Type, p []byte) []byte {
	var out []byte
	for len(p) > wire.DefaultMaxFrame {
		out = append(out, RawFrame(stream, t, wire.FlagMore, p[:wire.DefaultMaxFrame])...)
		p = p[wire.DefaultMaxFrame:]
	}
	return append(out, RawFrame(stream, t, 0, p)...)
}

// CallParts is the CALL c on stream, in parts of at most a frame's
// payload each.
func CallParts(stream uint32, c *wire.Call) []byte {
	p := wire.AppendCall(nil, c)
	var out []byte
	for len(p) > wire.DefaultMaxFrame {
		out = append(out, RawFrame(stream, wire.TypeCall, wire.FlagMore, p[:wire.DefaultMaxFrame])...)
		p = p[wire.DefaultMaxFrame:]
	}
	return append(out, RawFrame(stream, wire.TypeCall, 0, p)...)
}

// Send writes frames to the server.
func (rf *RawFast) Send(t *testing.T, frames ...[]byte) {
	t.Helper()
	rf.C.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rf.C.Write(bytes.Join(frames, nil)); err != nil {
		t.Fatalf("sending: %v", err)
	}
}

// Next reads the server's next frame, noting it.
func (rf *RawFast) Next(within time.Duration) (wire.Header, []byte, error) {
	rf.C.SetReadDeadline(time.Now().Add(within))
	h, p, err := rf.R.Next()
	if err != nil {
		return h, p, err
	}
	rf.Frames = append(rf.Frames, h.Type)
	if h.Type == wire.TypeGoAway {
		if g, err := wire.ParseGoAway(p); err == nil {
			rf.GoAway = &g
		}
	}
	return h, p, nil
}

// Alive pings the server and waits for its answer: the connection is
// still served.
func (rf *RawFast) Alive(t *testing.T) {
	t.Helper()
	data := []byte("alive?!!")
	rf.Send(t, RawFrame(0, wire.TypePing, 0, data))
	deadline := time.Now().Add(3 * time.Second)
	for {
		h, p, err := rf.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("no answer to a PING: %v (frames so far %v)", err, rf.Frames)
		}
		if h.Type == wire.TypePing && h.Flags&wire.FlagAck != 0 && bytes.Equal(p, data) {
			return
		}
	}
}

// Closed reads until the server closes the connection: true if it did
// within the time given.
func (rf *RawFast) Closed(within time.Duration) (bool, error) {
	deadline := time.Now().Add(within)
	for {
		_, _, err := rf.Next(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, err
		}
		return true, err // EOF, ECONNRESET: closed
	}
}

// RawConn connects to a Unix socket endpoint without gRPC.
func RawConn(t *testing.T, endpoint string) net.Conn {
	t.Helper()
	c, err := grpcipc.Dial(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// UnixAddr is the address net.Dial("unix", ...) takes for a Unix socket
// endpoint ("@name" for an abstract one).
func UnixAddr(endpoint string) (string, error) {
	ep, err := grpcipc.ParseEndpoint(endpoint)
	if err != nil {
		return "", err
	}
	if ep.Transport == grpcipc.UnixAbstract {
		return "@" + ep.Address, nil
	}
	return ep.Address, nil
}

// AddrAndCount parses a helper's arguments ENDPOINT N.
func AddrAndCount(args []string) (string, int, error) {
	addr, err := UnixAddr(args[0])
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(args[1])
	return addr, n, err
}

// Outcome reads the server's frames on stream until its TRAILERS, and
// returns the reply message's bytes and the trailer.
func (rf *RawFast) Outcome(t *testing.T, stream uint32) ([]byte, wire.Trailer) {
	t.Helper()
	var msg []byte
	for {
		h, p, err := rf.Next(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for stream %d's end: %v (frames so far %v)", stream, err, rf.Frames)
		}
		if h.Stream != stream {
			continue
		}
		switch h.Type {
		case wire.TypeMessage:
			msg = append(msg, p...)
		case wire.TypeTrailers:
			tr, err := wire.ParseTrailer(p)
			if err != nil {
				t.Fatal(err)
			}
			return msg, tr
		}
	}
}
