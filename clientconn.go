package grpcipc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastpath"
	"github.com/grpcipc/grpcipc/internal/sockfile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Protocol is a protocol a [ClientConn] speaks ([ClientConn.Protocol]):
// the fast path prints as "grpcipc", HTTP/2 as "http2".
type Protocol string

// The protocols a [ClientConn] speaks.
const (
	ProtocolFast  Protocol = "grpcipc" // grpcipc's fast path (docs/protocol.md)
	ProtocolHTTP2 Protocol = "http2"   // gRPC over HTTP/2, through a grpc.ClientConn
)

// answerTimeout bounds the wait for a server's first bytes when the call
// that dials has no deadline: grpc-go's own bound on a connection attempt
// (its MinConnectTimeout). Every gRPC server answers a client's preface
// at once; only one that answers nothing at all waits for it.
const answerTimeout = 20 * time.Second

// ClientConn is a client connection to a local endpoint, made by
// [NewClient]. It implements [grpc.ClientConnInterface], so generated
// clients take it (pb.NewXClient(conn)). Many goroutines may call through
// it at once: their calls share one connection.
type ClientConn struct {
	ep      Endpoint
	cfg     clientConfig
	creds   *transportCreds
	log     *slog.Logger
	unary   grpc.UnaryClientInterceptor
	stream  grpc.StreamClientInterceptor
	invoker grpc.UnaryInvoker
	streamr grpc.Streamer
	denied  atomic.Pointer[error] // the last dial's permission error
	closing chan struct{}         // closed by Close

	mu       sync.Mutex
	protocol Protocol // "", ProtocolFast or ProtocolHTTP2
	fc       *fastpath.ClientConn
	dialing  chan struct{} // closed when the dial in progress ends
	retry    reconnect     // failed dials, and when the next may start
	h2       *grpc.ClientConn
	handoff  net.Conn // a connection the server answered in HTTP/2, for h2's first dial
	closed   bool
}

// NewClient returns a client connection to the endpoint (see
// [ParseEndpoint]). Like grpc.NewClient it does no I/O: it connects on the
// first call.
//
// It offers grpcipc's fast path first, and when the server does not speak
// it (plain grpc-go, Python, Kestrel, any other gRPC stack) it speaks
// HTTP/2 through a [grpc.ClientConn] instead, for the rest of its life,
// with no error to the caller: the offer is part of a valid HTTP/2 client
// preface, so HTTP/2 goes on on the connection that carried it, with no
// timer and no second connection (the choice is logged at debug level; see
// [ClientConn.Protocol]). Endpoints with TLS ([WithTLS], [WithPins]) and
// tcp endpoints speak HTTP/2; [WithHTTP2] asks for HTTP/2 everywhere, for
// what only grpc.ClientConn offers.
//
// Before a byte of a request is sent, the server's OS identity is read and
// checked. By default a local server must run as the client's own user or
// as root (a client cannot defend against root anyway), and a socket file
// must be owned by one of them in directories no one else can write to;
// [WithExpectedServer] widens or narrows that ([Anyone] trusts any server).
// Over a local socket the security level is PrivacyAndIntegrity, so per-RPC
// credentials that require a secure channel may be sent. A tcp endpoint has
// no OS identity: it needs [WithTLS] or [WithPins] to reach another
// machine, and without TLS admits only loopback addresses.
//
// When the socket file's permissions refuse this user (EACCES), calls fail
// at once with codes.PermissionDenied and a message that says so, rather
// than codes.Unavailable.
//
// While the server cannot be reached, the client dials again with
// grpc-go's backoff (1 s after a failure, 1.6 times longer after each
// next one up to 120 s, each ±20 %; a connection made resets it), not once
// per call: meanwhile calls fail at once with codes.Unavailable and the
// last dial's error, and calls with grpc.WaitForReady wait, within their
// deadlines, for the next attempt.
//
// Call options honoured on the fast path: grpc.Header, grpc.Trailer,
// grpc.Peer, grpc.MaxCallRecvMsgSize, grpc.MaxCallSendMsgSize,
// grpc.WaitForReady, grpc.PerRPCCredentials; grpc.UseCompressor fails the
// call with codes.Unimplemented (the fast path does not compress; a local
// socket gains nothing from it). Others are ignored.
func NewClient(endpoint string, opts ...ClientOption) (*ClientConn, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	return newClientConn(ep, nil, opts)
}

// newClientConn makes a ClientConn of ep that connects with dial, or by
// dialling ep when dial is nil.
func newClientConn(ep Endpoint, dial func(context.Context) (net.Conn, error), opts []ClientOption) (*ClientConn, error) {
	cfg, creds, err := clientSetupEndpoint(ep, opts)
	if err != nil {
		return nil, err
	}
	cfg.dial = dial
	if err := checkNoTransportCredentials(cfg.grpcOpts); err != nil {
		return nil, err
	}
	cc := &ClientConn{ep: ep, cfg: cfg, creds: creds, log: cmp.Or(cfg.logger, slog.Default()), closing: make(chan struct{})}
	cc.unary = chainUnaryClient(cfg.unary)
	cc.stream = chainStreamClient(cfg.stream)
	cc.invoker = cc.invoke
	cc.streamr = cc.newStream
	if cfg.http2 || ep.Transport == TCP || creds.tls != nil {
		if cc.h2, err = newGRPCClient(ep, &cc.cfg, creds, &cc.denied, nil); err != nil {
			return nil, err
		}
		cc.protocol = ProtocolHTTP2
	}
	return cc, nil
}

// Protocol says which protocol the connection speaks: [ProtocolFast] or
// [ProtocolHTTP2]; "" until the first connection to the server has told.
func (cc *ClientConn) Protocol() Protocol {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.protocol
}

// GRPCClientConn returns the grpc.ClientConn that speaks HTTP/2, or nil
// while the connection speaks the fast path (see [WithHTTP2]).
func (cc *ClientConn) GRPCClientConn() *grpc.ClientConn {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.h2
}

// Close closes the connection; calls in flight fail with codes.Canceled.
func (cc *ClientConn) Close() error {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return status.Error(codes.Canceled, "grpcipc: the client connection is already closed")
	}
	cc.closed = true
	close(cc.closing)
	fc, h2, handoff := cc.fc, cc.h2, cc.handoff
	cc.handoff = nil
	cc.mu.Unlock()
	if handoff != nil {
		handoff.Close()
	}
	if fc != nil {
		fc.Close(errors.New("the client connection is closing"))
	}
	if h2 != nil {
		return h2.Close()
	}
	return nil
}

var errClosing = status.Error(codes.Canceled, "grpcipc: the client connection is closing")

// Invoke makes a unary call (generated code calls it).
func (cc *ClientConn) Invoke(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error {
	if cc.unary != nil {
		return cc.unary(ctx, method, req, reply, cc.GRPCClientConn(), cc.invoker, opts...)
	}
	return cc.invoke(ctx, method, req, reply, nil, opts...)
}

func (cc *ClientConn) invoke(ctx context.Context, method string, req, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
	ci, err := cc.callInfo(opts)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		fc, h2, err := cc.transport(ctx, ci.WaitForReady())
		if err != nil {
			return err
		}
		if h2 != nil {
			return h2.Invoke(ctx, method, req, reply, opts...)
		}
		err = fc.Invoke(ctx, method, req, reply, &ci)
		if err == fastpath.ErrNotStarted && attempt < 3 {
			continue // the server went away before it started the call
		}
		return err
	}
}

// NewStream starts a streaming call (generated code calls it).
func (cc *ClientConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if cc.stream != nil {
		return cc.stream(ctx, desc, cc.GRPCClientConn(), method, cc.streamr, opts...)
	}
	return cc.newStream(ctx, desc, nil, method, opts...)
}

func (cc *ClientConn) newStream(ctx context.Context, desc *grpc.StreamDesc, _ *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ci, err := cc.callInfo(opts)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		fc, h2, err := cc.transport(ctx, ci.WaitForReady())
		if err != nil {
			return nil, err
		}
		if h2 != nil {
			return h2.NewStream(ctx, desc, method, opts...)
		}
		st, err := fc.NewStream(ctx, desc, method, &ci)
		if err == fastpath.ErrNotStarted && attempt < 3 {
			continue
		}
		return st, err
	}
}

// callInfo reads a call's options for the fast path.
func (cc *ClientConn) callInfo(opts []grpc.CallOption) (fastpath.CallInfo, error) {
	ci, compressor := fastpath.ParseCallOptions(opts, DefaultMaxCallRecvMsgSize)
	if compressor != "" && cc.Protocol() != ProtocolHTTP2 {
		return ci, status.Errorf(codes.Unimplemented, "grpcipc: the fast path does not compress (asked for %q): a local socket gains nothing from it; use WithHTTP2 to compress over HTTP/2", compressor)
	}
	return ci, nil
}

// transport returns the fast connection to call on, or the grpc.ClientConn
// when the connection speaks HTTP/2, connecting first if need be.
//
// While the server cannot be reached, dials are spaced as grpc-go spaces
// them ([reconnect]): a call that does not wait for ready fails at once
// with the last dial's error until the next dial is due; one that waits
// for ready waits for it, within its deadline, and dials then.
func (cc *ClientConn) transport(ctx context.Context, waitForReady bool) (*fastpath.ClientConn, *grpc.ClientConn, error) {
	for {
		cc.mu.Lock()
		switch {
		case cc.closed:
			cc.mu.Unlock()
			return nil, nil, errClosing
		case cc.protocol == ProtocolHTTP2:
			h2 := cc.h2
			cc.mu.Unlock()
			return nil, h2, nil
		case cc.fc != nil && cc.fc.Usable():
			fc := cc.fc
			cc.mu.Unlock()
			return fc, nil, nil
		case cc.dialing != nil:
			ch := cc.dialing
			cc.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, nil, fastpath.ContextStatus(ctx)
			}
		}
		if wait := cc.retry.wait(time.Now()); wait > 0 {
			err := cc.retry.err
			cc.mu.Unlock()
			if !waitForReady || status.Code(err) != codes.Unavailable {
				return nil, nil, err
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, nil, fastpath.ContextStatus(ctx)
			case <-cc.closing:
				t.Stop()
				return nil, nil, errClosing
			}
		}
		ch := make(chan struct{})
		cc.dialing = ch
		cc.mu.Unlock()
		fc, handoff, err := cc.dial(ctx)
		cc.mu.Lock()
		cc.dialing = nil
		close(ch)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				cc.retry.failed(err, time.Now())
			} // else this call's deadline or cancellation ended the dial, not the server
		case cc.closed:
			if fc != nil {
				fc.Close(errClosing)
			}
			if handoff != nil {
				handoff.Close()
			}
		case handoff != nil:
			cc.retry.succeeded()
			cc.handoff = handoff
			if cc.h2 == nil {
				cc.h2, err = newGRPCClient(cc.ep, &cc.cfg, cc.creds, &cc.denied, cc.takeHandoff)
			}
			if err == nil {
				cc.protocol = ProtocolHTTP2
				cc.h2.Connect() // it dials now, and takes the connection
			} else {
				cc.handoff = nil
				handoff.Close()
			}
		default:
			cc.retry.succeeded()
			cc.fc, cc.protocol = fc, ProtocolFast
		}
		cc.mu.Unlock()
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return nil, nil, fastpath.ContextStatus(ctx)
		case !waitForReady || status.Code(err) != codes.Unavailable:
			return nil, nil, err
		}
		// Waiting for ready: the next turn waits for the next dial.
	}
}

// dial connects, checks the server and offers the fast path. A server
// that answers in HTTP/2 (every gRPC server but grpcipc's) has its
// connection returned as handoff, for the grpc.ClientConn to speak HTTP/2
// on: the offer was a valid HTTP/2 preface.
func (cc *ClientConn) dial(ctx context.Context) (fc *fastpath.ClientConn, handoff net.Conn, err error) {
	raw, err := cc.cfg.connect(ctx)
	if err != nil {
		if sockfile.IsAccessDenied(err) {
			return nil, nil, status.Error(codes.PermissionDenied, accessDeniedError(cc.ep, err).Error())
		}
		if ctx.Err() != nil {
			return nil, nil, fastpath.ContextStatus(ctx)
		}
		return nil, nil, status.Errorf(codes.Unavailable, "grpcipc: connecting to %s: %v", cc.ep, err)
	}
	// Descriptors a server attaches are closed off the reading goroutine,
	// or kept for the fast path's FILES frames.
	raw = rightsDiscarded(raw)
	conn, ai, err := cc.creds.ClientHandshake(ctx, "localhost", raw)
	if err != nil {
		raw.Close()
		return nil, nil, status.Error(codes.Unavailable, err.Error()) // it names the endpoint
	}
	deadline := time.Now().Add(answerTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	// The wait for the server's answer ends with the dialling call's
	// context or Close, as grpc-go's connection attempt does: not up to
	// answerTimeout later.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		select {
		case <-cc.closing:
			wcancel()
		case <-wctx.Done():
		}
	}()
	interrupt := context.AfterFunc(wctx, func() { conn.SetDeadline(time.Now()) })
	a, err := fastpath.Offer(conn)
	if err == nil && !interrupt() {
		err = errDialInterrupted
	}
	switch {
	case err != nil:
	case !a.Fast:
		// HTTP/2's server preface (a SETTINGS frame) or whatever else the
		// server says: grpc-go reads it and judges.
		conn.SetDeadline(time.Time{})
		cc.log.Debug("grpcipc: the server does not speak the fast path; speaking HTTP/2", "endpoint", cc.ep.String())
		return nil, &handoffConn{Conn: conn, ai: ai, pending: a.Pending}, nil
	default:
		conn.SetDeadline(time.Time{})
		fc := fastpath.NewClientConn(conn, a.Reader, a.Version, cc.fastConfig(ai))
		cc.log.Debug("grpcipc: speaking the fast path", "endpoint", cc.ep.String(), "version", a.Version)
		return fc, nil, nil
	}
	conn.Close()
	if ctx.Err() != nil {
		return nil, nil, fastpath.ContextStatus(ctx)
	}
	select {
	case <-cc.closing:
		return nil, nil, errClosing
	default:
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		err = errors.New("the server closed the connection before it answered")
	case errors.Is(err, syscall.ECONNRESET):
		err = fmt.Errorf("the server closed the connection before it answered: %w", err)
	case errors.As(err, &ne) && ne.Timeout():
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return nil, nil, fastpath.ContextStatus(ctx)
		}
		err = fmt.Errorf("the server did not answer the connection's first bytes within %v", answerTimeout)
	}
	return nil, nil, status.Errorf(codes.Unavailable, "grpcipc: handshake with %s: %v", cc.ep, err)
}

// fastConfig is the configuration of a fast-path connection to a server
// whose handshake gave ai.
func (cc *ClientConn) fastConfig(ai credentials.AuthInfo) fastpath.ClientConfig {
	cfg := fastpath.ClientConfig{
		AuthInfo:    ai,
		Budget:      cmp.Or(cc.cfg.connBudget, DefaultConnMemoryBudget),
		BudgetFixed: cc.cfg.connBudget != 0,
	}
	if a, ok := ai.(*AuthInfo); ok && a != nil {
		cfg.SecurityLevel = a.SecurityLevel
		if a.Endpoint.Transport == Inherited {
			cfg.ClosedBy = a.Endpoint.Address
		}
	}
	return cfg
}

// errDialInterrupted: the dialling call's context ended, or Close was
// called, while the dial waited for the server's answer.
var errDialInterrupted = errors.New("the dial was interrupted")

// takeHandoff hands the grpc.ClientConn's dialer the connection the first
// dial left for it, if any.
func (cc *ClientConn) takeHandoff() net.Conn {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c := cc.handoff
	cc.handoff = nil
	return c
}

func chainUnaryClient(is []grpc.UnaryClientInterceptor) grpc.UnaryClientInterceptor {
	if len(is) == 0 {
		return nil
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var next func(i int) grpc.UnaryInvoker
		next = func(i int) grpc.UnaryInvoker {
			if i == len(is) {
				return invoker
			}
			return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
				return is[i](ctx, method, req, reply, cc, next(i+1), opts...)
			}
		}
		return is[0](ctx, method, req, reply, cc, next(1), opts...)
	}
}

func chainStreamClient(is []grpc.StreamClientInterceptor) grpc.StreamClientInterceptor {
	if len(is) == 0 {
		return nil
	}
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		var next func(i int) grpc.Streamer
		next = func(i int) grpc.Streamer {
			if i == len(is) {
				return streamer
			}
			return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				return is[i](ctx, desc, cc, method, next(i+1), opts...)
			}
		}
		return is[0](ctx, desc, cc, method, next(1), opts...)
	}
}

var _ grpc.ClientConnInterface = (*ClientConn)(nil)

// String names the connection's endpoint.
func (cc *ClientConn) String() string { return fmt.Sprintf("grpcipc.ClientConn(%s)", cc.ep) }
