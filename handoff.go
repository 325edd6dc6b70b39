package grpcipc

import (
	"errors"
	"net"

	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/credentials"
)

// handoffConn is a connection on which a client offered the fast path and
// the server answered in HTTP/2, handed to the grpc.ClientConn: the offer
// was HTTP/2's client preface and a SETTINGS frame, so the connection goes
// on in HTTP/2. grpc-go writes a client preface of its own on every
// connection; the server has had one, so this drops it, and grpc-go's
// SETTINGS follow the offer's as a second SETTINGS frame, which HTTP/2
// allows. The server's bytes read while the client waited for its answer
// are read again first. The server was checked when the connection was
// made: the handshake grpc-go runs on it again returns that check's
// AuthInfo.
type handoffConn struct {
	net.Conn
	ai      credentials.AuthInfo
	pending []byte // the server's first bytes, read already
	dropped int    // bytes of grpc-go's client preface dropped so far
}

var errHandoffPreface = errors.New("grpcipc: the HTTP/2 client did not start with HTTP/2's preface")

func (c *handoffConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *handoffConn) Write(b []byte) (int, error) {
	if c.dropped == len(wire.HTTP2Preface) {
		return c.Conn.Write(b)
	}
	k := min(len(b), len(wire.HTTP2Preface)-c.dropped)
	if string(b[:k]) != wire.HTTP2Preface[c.dropped:c.dropped+k] {
		return 0, errHandoffPreface
	}
	c.dropped += k
	if k == len(b) {
		return k, nil
	}
	n, err := c.Conn.Write(b[k:])
	return k + n, err
}
