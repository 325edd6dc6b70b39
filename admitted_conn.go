package grpcipc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastpath"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/credentials"
)

// admittedConn is an accepted connection with its peer's identity. Until the
// client's HTTP/2 preface has arrived whole, it watches the bytes read, to
// log one clear line for a client that sends something else, stops short,
// or sends nothing at all.
type admittedConn struct {
	net.Conn
	creds      *Creds
	adm        *admission
	handshaken atomic.Bool
	encrypted  bool // TLS: the preface is inside it, not seen here

	watched   atomic.Bool // the preface arrived or its problem was logged
	mu        sync.Mutex
	preface   int  // bytes of the client preface seen so far
	prefaceOK bool // the whole preface arrived
	reported  bool // a problem with it was logged
	closed    bool

	onClose func() // gives back the caller's share of connections, if set

	// pending: bytes the server read to tell the protocols apart, which
	// Read returns first. Set before the connection is handed on.
	pending []byte
	// refused: the policy admits this caller to no method; a server made
	// with ServerOptions answers its calls with PermissionDenied.
	refused bool
	// refusedUntil: a refused connection is closed by then.
	refusedUntil time.Time
	// ai: the caller's AuthInfo on the fast path (fastAuthInfo), set
	// before the connection is served.
	ai *AuthInfo
}

// logKey is the caller key of the connection's log lines: tcp callers
// have no identity and share one.
func (c *admittedConn) logKey() string {
	if c.adm.tcp {
		return "tcp"
	}
	return callerKey(c.creds)
}

// http2Preface is what every HTTP/2 client sends first (RFC 9113, 3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (c *admittedConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		if !c.watched.Load() && !c.encrypted && c.handshaken.Load() {
			c.watchPreface(b[:n], nil)
		}
		return n, nil
	}
	n, err := c.Conn.Read(b)
	if !c.watched.Load() && !c.encrypted && c.handshaken.Load() {
		c.watchPreface(b[:n], err)
	}
	return n, err
}

func (c *admittedConn) watchPreface(b []byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prefaceOK || c.reported {
		return
	}
	for _, x := range b {
		if c.preface == len(http2Preface) {
			break
		}
		if x != http2Preface[c.preface] {
			if c.preface == 0 && bytes.HasPrefix(b, []byte(wire.Magic)) {
				// A grpcipc client offering the fast path to a plain
				// grpc.Server: it reconnects speaking HTTP/2.
				c.reportLocked("a grpcipc client offered the fast path, which this server (a grpc.Server) does not speak; it falls back to HTTP/2", slog.LevelDebug)
				return
			}
			c.reportLocked("its first bytes are neither HTTP/2's preface nor grpcipc's", slog.LevelWarn,
				"first_bytes", fmt.Sprintf("%q", b[:min(len(b), 16)]))
			return
		}
		c.preface++
	}
	if c.preface == len(http2Preface) {
		c.prefaceOK = true
		c.watched.Store(true)
	} else if err != nil && !c.closed {
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		c.reportLocked(c.prefaceProblem(timeout))
	}
}

// prefaceProblem says how the client's preface fell short. A client that
// connects and hangs up without a byte is what a liveness probe does (a
// second server checking whether the socket is live before it replaces
// it, a health checker): that is logged at debug level only.
func (c *admittedConn) prefaceProblem(timeout bool) (string, slog.Level) {
	switch {
	case c.preface > 0:
		return fmt.Sprintf("the HTTP/2 preface stopped after %d bytes", c.preface), slog.LevelWarn
	case timeout:
		return "nothing received before the handshake timeout", slog.LevelWarn
	}
	return "the client hung up without sending anything (a liveness probe does that)", slog.LevelDebug
}

func (c *admittedConn) reportLocked(why string, level slog.Level, attrs ...any) {
	c.reported = true
	c.watched.Store(true)
	if !c.adm.log.Enabled(context.Background(), level) {
		return
	}
	ok, skipped := c.adm.logOK(c.logKey())
	if !ok {
		return
	}
	if skipped > 0 {
		attrs = append(attrs, "lines_not_logged", skipped)
	}
	c.adm.log.Log(context.Background(), level, "grpcipc: connection dropped: "+why,
		append([]any{"endpoint", c.adm.ep.String(), "caller", c.creds.String()}, attrs...)...)
}

func (c *admittedConn) Close() error {
	c.mu.Lock()
	if !c.encrypted && c.handshaken.Load() && !c.prefaceOK && !c.reported && !c.closed {
		c.reportLocked(c.prefaceProblem(false))
	}
	first := !c.closed
	c.closed = true
	c.mu.Unlock()
	err := c.Conn.Close()
	if first && c.onClose != nil {
		c.onClose()
	}
	return err
}

// sniffProblem says how a client's HTTP/2 preface, read by sniff, fell
// short (pc.mu held).
func (pc *admittedConn) sniffProblem(f fastpath.Sniffed) (string, slog.Level) {
	var ne net.Error
	timeout := errors.As(f.Err, &ne) && ne.Timeout()
	if n := len(f.Read) - len(http2Preface); n >= 0 {
		if timeout {
			return fmt.Sprintf("its first HTTP/2 frame stopped after %d bytes before the handshake timeout", n), slog.LevelWarn
		}
		return fmt.Sprintf("its first HTTP/2 frame stopped after %d bytes", n), slog.LevelWarn
	}
	pc.preface = len(f.Read)
	return pc.prefaceProblem(timeout)
}

// A connection served on the fast path is its fastpath.Caller: the fast
// path knows its caller only through these methods.
var _ fastpath.Caller = (*admittedConn)(nil)

// fastAuthInfo is the AuthInfo of a connection served on the fast path,
// which handlers find in their peer.Peer (the kernel names the peer of a
// local connection: PrivacyAndIntegrity).
func (pc *admittedConn) fastAuthInfo() *AuthInfo {
	return &AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		Transport:      pc.adm.ep.Transport, Endpoint: pc.adm.ep, Peer: pc.creds, adm: pc.adm,
	}
}

// AuthInfo returns the caller's AuthInfo (fastpath.Caller).
func (pc *admittedConn) AuthInfo() credentials.AuthInfo { return pc.ai }

// BudgetKey names the memory budget the caller's connections share, ""
// for the server's own user and root, who have none (fastpath.Caller).
func (pc *admittedConn) BudgetKey() string {
	if pc.adm.trusted(pc.creds) {
		return ""
	}
	return callerKey(pc.creds)
}

// Authorize applies the policy to a call (fastpath.Caller).
func (pc *admittedConn) Authorize(method string) error { return pc.ai.authorize(method) }

// Warn logs a line about the connection, rate-limited per caller, with
// the endpoint and the caller first (fastpath.Caller).
func (pc *admittedConn) Warn(msg string, attrs ...any) {
	g := pc.adm
	if ok, skipped := g.logOK(pc.logKey()); ok {
		all := append([]any{"endpoint", g.ep.String(), "caller", pc.creds.String()}, attrs...)
		if skipped > 0 {
			all = append(all, "lines_not_logged", skipped)
		}
		g.log.Warn(msg, all...)
	}
}
