package grpcipc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// guard is a listener's policy and what applying it needs.
type guard struct {
	ep     Endpoint
	policy *Policy
	self   identity
	log    *slog.Logger
	// methodRules: only ServerOptions' interceptors can apply the policy,
	// so connections must go through its handshake.
	methodRules bool
}

// refuse logs a refused caller with the rule that refused it ("" when no
// allow rule matched) and returns the error the caller gets.
func (g *guard) refuse(method string, c *Creds, rule string) error {
	if rule == "" {
		rule = "(no allow rule matched)"
	}
	attrs := []any{"endpoint", g.ep.String(), "caller", c.String(), "policy", g.policy.name, "rule", rule}
	if method != "" {
		attrs = append(attrs, "method", method)
		g.log.Warn("grpcipc: call refused", attrs...)
	} else {
		g.log.Warn("grpcipc: connection refused", attrs...)
	}
	return &RefusedError{Caller: c.String(), Method: method}
}

// errNoHandshake is what a connection reads when the server was not made
// with ServerOptions although the policy needs it.
var errNoHandshake = errors.New("grpcipc: this listener's policy has per-method rules, which need a grpc.Server made with grpcipc.ServerOptions(); closing the connection")

// peerConn is an accepted connection with its peer's identity. Until the
// client's HTTP/2 preface has arrived whole, it watches the bytes read, to
// log one clear line for a client that sends something else, stops short,
// or sends nothing at all.
type peerConn struct {
	net.Conn
	creds      *Creds
	guard      *guard
	handshaken atomic.Bool
	once       sync.Once
	encrypted  bool // TLS: the preface is inside it, not seen here

	watched   atomic.Bool // the preface arrived or its problem was logged
	mu        sync.Mutex
	preface   int  // bytes of the client preface seen so far
	prefaceOK bool // the whole preface arrived
	reported  bool // a problem with it was logged
	closed    bool
}

// http2Preface is what every HTTP/2 client sends first (RFC 9113, 3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (c *peerConn) Read(b []byte) (int, error) {
	if c.guard.methodRules && !c.handshaken.Load() {
		c.once.Do(func() { c.guard.log.Error(errNoHandshake.Error(), "endpoint", c.guard.ep.String()) })
		c.Conn.Close()
		return 0, errNoHandshake
	}
	n, err := c.Conn.Read(b)
	if !c.watched.Load() && !c.encrypted && c.handshaken.Load() {
		c.watchPreface(b[:n], err)
	}
	return n, err
}

func (c *peerConn) watchPreface(b []byte, err error) {
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
			c.reportLocked("not an HTTP/2 client: its first bytes are not the HTTP/2 preface",
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

// prefaceProblem says how the client's preface fell short.
func (c *peerConn) prefaceProblem(timeout bool) string {
	switch {
	case c.preface > 0:
		return fmt.Sprintf("the HTTP/2 preface stopped after %d bytes", c.preface)
	case timeout:
		return "nothing received before the handshake timeout"
	}
	return "the client hung up without sending anything"
}

func (c *peerConn) reportLocked(why string, attrs ...any) {
	c.reported = true
	c.watched.Store(true)
	c.guard.log.Warn("grpcipc: connection dropped: "+why,
		append([]any{"endpoint", c.guard.ep.String(), "caller", c.creds.String()}, attrs...)...)
}

func (c *peerConn) Close() error {
	c.mu.Lock()
	if !c.encrypted && c.handshaken.Load() && !c.prefaceOK && !c.reported && !c.closed {
		c.reportLocked(c.prefaceProblem(false))
	}
	c.closed = true
	c.mu.Unlock()
	err := c.Conn.Close()
	c.creds.release()
	return err
}

// guardedListener reads the identity of every caller as it is accepted and
// hands over only those the policy admits to some method. The others are
// answered by a small gRPC server of their own, so that their calls fail
// with codes.PermissionDenied and a message, rather than a dropped
// connection.
type guardedListener struct {
	net.Listener
	guard *guard

	mu      sync.Mutex
	refuser *refuser
	closed  bool
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tuneSocket(c)
		creds, err := readPeerCreds(c, true)
		if err != nil {
			l.guard.log.Warn("grpcipc: reading the caller's identity", "endpoint", l.guard.ep.String(), "err", err)
			creds = nil
		}
		pc := &peerConn{Conn: c, creds: creds, guard: l.guard}
		ok, rule := l.guard.policy.admitsConn(creds, l.guard.self)
		if ok {
			return pc, nil
		}
		l.guard.refuse("", creds, rule)
		l.refuse(pc)
	}
}

func (l *guardedListener) refuse(c *peerConn) {
	c.handshaken.Store(true) // the refusal server's own handshake is grpcipc's
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return
	}
	if l.refuser == nil {
		l.refuser = newRefuser(l.Listener.Addr())
	}
	l.refuser.take(c)
}

func (l *guardedListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	r := l.refuser
	l.closed = true
	l.mu.Unlock()
	if r != nil {
		r.stop()
	}
	return err
}

// refuser is the gRPC server that answers refused callers.
type refuser struct {
	srv   *grpc.Server
	conns chan net.Conn
	done  chan struct{}
	addr  net.Addr
	wg    sync.WaitGroup
	once  sync.Once
}

// refusedBacklog bounds refused connections waiting for the refusal server;
// past it they are closed at once.
const refusedBacklog = 64

func newRefuser(addr net.Addr) *refuser {
	r := &refuser{conns: make(chan net.Conn, refusedBacklog), done: make(chan struct{}), addr: addr}
	r.srv = grpc.NewServer(
		grpc.Creds(&transportCreds{}),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			ai, _ := AuthInfoFromContext(ss.Context())
			var c *Creds
			if ai != nil {
				c = ai.Peer
			}
			return &RefusedError{Caller: c.String()}
		}),
		grpc.MaxConcurrentStreams(4),
		grpc.ConnectionTimeout(5*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: 5 * time.Second, MaxConnectionAge: 10 * time.Second, MaxConnectionAgeGrace: time.Second,
		}),
	)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.srv.Serve(chanListener{r})
	}()
	return r
}

func (r *refuser) take(c net.Conn) {
	select {
	case r.conns <- c:
	default:
		c.Close() // too many refused callers at once
	}
}

func (r *refuser) stop() {
	r.once.Do(func() { close(r.done) })
	r.srv.Stop()
	r.wg.Wait()
	for {
		select {
		case c := <-r.conns:
			c.Close()
		default:
			return
		}
	}
}

// chanListener hands the refusal server the connections given to take.
type chanListener struct{ r *refuser }

func (l chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.r.conns:
		return c, nil
	case <-l.r.done:
		return nil, net.ErrClosed
	}
}

func (l chanListener) Close() error {
	l.r.once.Do(func() { close(l.r.done) })
	return nil
}

func (l chanListener) Addr() net.Addr { return l.r.addr }
