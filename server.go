package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastio"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
)

// Server is a gRPC server for local endpoints that speaks two protocols on
// one listener: HTTP/2, through an embedded [grpc.Server], for every gRPC
// client (grpcurl, Python, Node, C++, plain grpc-go), and grpcipc's fast
// path (docs/protocol.md), a lean framing that grpcipc's own clients
// ([NewClient]) use. Services register once, as on a grpc.Server (it is a
// [grpc.ServiceRegistrar]: generated pb.RegisterXServer(s, impl) works), and
// answer on both.
//
// Every connection's OS identity is read when it is accepted and checked
// against the server's [Policy] ([WithPolicy]) before a byte of it is
// read, whichever protocol it then speaks and whatever listener it came
// from; per-method rules are checked on every call of both protocols.
type Server struct {
	cfg   serverConfig
	creds *transportCreds
	grpc  *grpc.Server
	h2    *connQueue // connections for grpc; served once the first Serve starts

	methods  map[string]*method
	services map[string]bool
	unary    grpc.UnaryServerInterceptor
	stream   grpc.StreamServerInterceptor
	workers  *workerPool
	intern   func([]byte) string // a method's name without a copy, if registered

	mu        sync.Mutex
	serving   bool // grpc serves h2
	stopped   bool // Stop or GracefulStop began
	draining  bool // GracefulStop began
	listeners map[*policyListener]bool
	conns     map[*fastServerConn]bool
	budgets   map[string]*fastio.Budget // callers' memory budgets, by callerKey
	connsIdle *sync.Cond                // signalled when a fast connection ends
	wg        sync.WaitGroup
	h2done    chan struct{}
}

// method is a registered method: a unary one has md, a streaming one sd.
type method struct {
	name string // full: /pkg.Service/Method
	impl any
	md   *grpc.MethodDesc
	sd   *grpc.StreamDesc
}

// NewServer makes a server. Options set the policy ([WithPolicy]), the
// logger, TLS, limits, interceptors and stats handlers, for both
// protocols; [WithGRPCServerOptions] adds grpc-go options that apply to
// HTTP/2 only.
//
// TLS ([WithTLS], [WithPins]): the server then serves HTTP/2 over TLS only,
// and grpcipc's clients given TLS options speak HTTP/2 to it. The fast path
// runs over local connections without TLS, whose peer the kernel names.
// tcp listeners are served HTTP/2 only.
func NewServer(opts ...ServerOption) (*Server, error) {
	cfg, err := newServerConfig(opts)
	if err != nil {
		return nil, err
	}
	creds, err := newServerCreds(&cfg)
	if err != nil {
		return nil, err
	}
	if err := checkGRPCOptions(cfg.grpcOpts); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		creds:     creds,
		methods:   map[string]*method{},
		services:  map[string]bool{},
		listeners: map[*policyListener]bool{},
		conns:     map[*fastServerConn]bool{},
		budgets:   map[string]*fastio.Budget{},
		workers:   newWorkerPool(),
		h2done:    make(chan struct{}),
	}
	s.connsIdle = sync.NewCond(&s.mu)
	s.grpc = grpc.NewServer(append(append(localServerOptions(),
		grpc.UnknownServiceHandler(s.unknownService)),
		append(cfg.grpcOptions(),
			grpc.Creds(creds),
			grpc.ConnectionTimeout(cfg.handshakeTimeout))...)...)
	s.h2 = newConnQueue()
	s.intern = func(b []byte) string {
		if m, ok := s.methods[string(b)]; ok {
			return m.name
		}
		return string(b)
	}
	s.unary = chainUnary(cfg.unary)
	s.stream = chainStream(cfg.stream)
	return s, nil
}

// RegisterService registers a service and its implementation, as
// [grpc.Server.RegisterService] does (generated code calls it). It must be
// called before Serve.
func (s *Server) RegisterService(sd *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(sd, impl) // checks impl and duplicates, as grpc-go does
	s.services[sd.ServiceName] = true
	for i := range sd.Methods {
		d := &sd.Methods[i]
		name := "/" + sd.ServiceName + "/" + d.MethodName
		s.methods[name] = &method{name: name, impl: impl, md: d}
	}
	for i := range sd.Streams {
		d := &sd.Streams[i]
		name := "/" + sd.ServiceName + "/" + d.StreamName
		s.methods[name] = &method{name: name, impl: impl, sd: d}
	}
}

// unknownService answers HTTP/2 calls of a method the server lacks, as
// the fast path does (grpc-go's words), unless the caller is refused.
func (s *Server) unknownService(_ any, ss grpc.ServerStream) error {
	ctx := ss.Context()
	method, _ := grpc.Method(ctx)
	if err := authorizeCall(ctx, method); err != nil {
		return err
	}
	return s.unimplemented(method)
}

// GetServiceInfo returns the registered services, as
// [grpc.Server.GetServiceInfo] does (the reflection service uses it).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo { return s.grpc.GetServiceInfo() }

// GRPCServer returns the embedded grpc.Server that serves HTTP/2, for
// what only it offers (channelz, admin services). Services registered on
// it directly answer on HTTP/2 only.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// ErrServerStopped is returned by [Server.Serve] once the server has
// stopped.
var ErrServerStopped = errors.New("grpcipc: the server has stopped")

// Serve accepts connections on l until the server stops or l fails, and
// serves each with the protocol its client speaks. l may come from
// [Listen], from systemd, from net.Listen: whatever it is, every
// connection's OS identity is read and the policy applied before its first
// byte is read. Serve closes l when it returns; it returns nil after Stop
// or GracefulStop.
func (s *Server) Serve(l net.Listener) error {
	ep := endpointOfListener(l)
	policy := s.cfg.policy
	if ll, ok := l.(*listener); ok {
		policy = s.listenerPolicy(ll)
		l = ll.Listener
	}
	pl, err := s.newGate(ep, l, policy)
	if err != nil {
		l.Close()
		return err
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		l.Close()
		return ErrServerStopped
	}
	s.listeners[pl] = true
	if !s.serving {
		s.serving = true
		go func() {
			defer close(s.h2done)
			s.grpc.Serve(s.h2)
		}()
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, pl)
		s.mu.Unlock()
		pl.Close()
	}()
	var wait time.Duration
	for {
		c, err := pl.Accept()
		if err != nil {
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if stopped {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				wait = min(max(2*wait, 5*time.Millisecond), time.Second)
				s.cfg.logger.Warn("grpcipc: accept failed; retrying", "endpoint", ep.String(), "err", err, "retry_in", wait)
				time.Sleep(wait)
				continue
			}
			return err
		}
		wait = 0
		pc := c.(*peerConn)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handleRaw(pc)
		}()
	}
}

// newGate makes the policy listener that checks l's connections.
func (s *Server) newGate(ep Endpoint, l net.Listener, policy *Policy) (*policyListener, error) {
	g, err := newGuard(&s.cfg, ep)
	if err != nil {
		return nil, err
	}
	if !g.tcp {
		g.policy = policy
	}
	max := s.cfg.maxPerCaller
	if ep.Transport == TCP {
		max = 0
	}
	return newPolicyListener(l, g, max), nil
}

// listenerPolicy returns the policy that checks the callers of a Listen
// listener, and makes the socket's permissions agree with it: the policy
// is given once. The server's own WithPolicy wins; without one, a policy
// given to Listen is the server's for that listener. A socket whose
// permissions Listen set by default is given those the policy needs (as
// Listen would have with it); one set explicitly (WithSocketMode, or
// another policy given to Listen) is left as it is, and a mismatch is
// logged as a warning naming both.
func (s *Server) listenerPolicy(ll *listener) *Policy {
	policy := s.cfg.policy
	if !s.cfg.policySet && ll.policy != nil {
		policy = ll.policy
		s.cfg.logger.Debug("grpcipc: serving with the policy given to Listen", "endpoint", ll.ep.String(), "policy", policy.Name())
	}
	ll.matchAccess(policy, s.cfg.logger)
	return policy
}

// newGuard makes the guard of a listener of ep.
func newGuard(cfg *serverConfig, ep Endpoint) (*guard, error) {
	if ep.Transport == TCP {
		g := &guard{ep: ep, log: cfg.logger, tcp: true, tcpOpen: cfg.unauthenticatedTCP}
		if g.tcpOpen {
			g.log.Warn("grpcipc: serving tcp without client authentication (WithUnauthenticatedTCP): every process that can reach the port may call, as no one",
				"endpoint", ep.String())
		}
		return g, nil
	}
	self, err := selfIdentity()
	if err != nil {
		return nil, fmt.Errorf("grpcipc: serve %s: %w", ep, err)
	}
	return &guard{ep: ep, policy: cfg.policy, self: self, log: cfg.logger}, nil
}

// endpointOfListener tells which endpoint l serves, for logs and AuthInfo.
func endpointOfListener(l net.Listener) Endpoint {
	switch ll := l.(type) {
	case *listener:
		return ll.ep
	case interface{ endpoint() Endpoint }:
		return ll.endpoint()
	}
	return endpointOfAddr(l.Addr())
}

// endpointOfAddr tells the endpoint of a local address.
func endpointOfAddr(a net.Addr) Endpoint {
	switch a.Network() {
	case "unix", "unixpacket":
		if name, ok := strings.CutPrefix(a.String(), "@"); ok {
			return Endpoint{Transport: UnixAbstract, Address: name}
		}
		return Endpoint{Transport: Unix, Address: a.String()}
	case "pipe":
		return Endpoint{Transport: NamedPipe, Address: strings.TrimPrefix(a.String(), `\\.\pipe\`)}
	}
	return Endpoint{Transport: TCP, Address: a.String()}
}

// handleRaw reads an admitted connection's first bytes and serves it with
// the protocol they announce.
func (s *Server) handleRaw(pc *peerConn) {
	if pc.guard.tcp || s.creds.tls != nil {
		s.h2.put(pc) // TLS first: the handshake tells the rest
		return
	}
	pc.Conn.SetReadDeadline(time.Now().Add(s.cfg.handshakeTimeout))
	f := sniff(pc.Conn)
	pc.Conn.SetReadDeadline(time.Time{})
	switch {
	case len(f.read) == 0:
		pc.handshaken.Store(true)
		var ne net.Error
		if errors.As(f.err, &ne) && ne.Timeout() {
			pc.mu.Lock()
			pc.reportLocked(pc.prefaceProblem(true))
			pc.mu.Unlock()
		}
		pc.Close()
	case !f.fast && !f.broken && f.err != nil:
		// HTTP/2's preface, or its first frame, stopped short within the
		// handshake timeout: handed to grpc-go, it would have as long
		// again (a client that trickled it held its connection twice the
		// timeout).
		pc.handshaken.Store(true)
		pc.mu.Lock()
		pc.reportLocked(pc.sniffProblem(f))
		pc.mu.Unlock()
		pc.Close()
	case !f.fast && !f.broken:
		pc.pending = f.read
		s.h2.put(pc)
	case f.broken:
		pc.handshaken.Store(true)
		why := "its first bytes are neither HTTP/2's preface nor grpcipc's"
		if f.err != nil {
			why = fmt.Sprintf("grpcipc's preface stopped after %d bytes", len(f.read))
		}
		pc.mu.Lock()
		pc.reportLocked(why, slog.LevelWarn, "first_bytes", fmt.Sprintf("%q", f.read[:min(len(f.read), 16)]))
		pc.mu.Unlock()
		pc.Close()
	default:
		pc.handshaken.Store(true)
		pc.mu.Lock()
		pc.prefaceOK = true
		pc.watched.Store(true)
		pc.mu.Unlock()
		s.serveFast(pc, f.version, f.rest)
	}
}

// sniffProblem says how a client's HTTP/2 preface, read by sniff, fell
// short (pc.mu held).
func (pc *peerConn) sniffProblem(f sniffed) (string, slog.Level) {
	var ne net.Error
	timeout := errors.As(f.err, &ne) && ne.Timeout()
	if n := len(f.read) - len(wire.HTTP2Preface); n >= 0 {
		if timeout {
			return fmt.Sprintf("its first HTTP/2 frame stopped after %d bytes before the handshake timeout", n), slog.LevelWarn
		}
		return fmt.Sprintf("its first HTTP/2 frame stopped after %d bytes", n), slog.LevelWarn
	}
	pc.preface = len(f.read)
	return pc.prefaceProblem(timeout)
}

// sniffed is what a connection's first bytes say.
type sniffed struct {
	read    []byte // the bytes read (for HTTP/2 to read again, unless fast)
	rest    []byte // when fast: bytes read after the offer, the first frames'
	fast    bool   // the client offers the fast path, in version
	version uint8  // the version to speak: the client's, at most wire.Version
	broken  bool   // a grpcipc preface that is not one
	err     error  // why reading stopped early, if it did
}

// sniff reads a new connection's first bytes (its read deadline set) and
// tells which protocol they ask for: the fast path, offered in the
// SETTINGS of an HTTP/2 client preface (version 2 and later; see
// [wire.AppendOffer]) or by grpcipc's own preface (version 1's clients),
// or HTTP/2 (or anything else, for grpc-go to judge).
func sniff(conn net.Conn) sniffed {
	buf := make([]byte, 0, wire.OfferSize)
	n, err := io.ReadAtLeast(conn, buf[:cap(buf)], 1)
	buf = buf[:n]
	switch {
	case n == 0:
		return sniffed{err: err}
	case buf[0] == wire.Magic[0]:
		if n < wire.PrefaceSize {
			var m int
			m, err = io.ReadFull(conn, buf[n:wire.PrefaceSize])
			buf = buf[:n+m]
		} else {
			err = nil
		}
		if err != nil {
			return sniffed{read: buf, broken: true, err: err}
		}
		v, perr := wire.ParsePreface(buf[:wire.PrefaceSize])
		if perr != nil {
			return sniffed{read: buf, broken: true}
		}
		// Frames may follow at once (version 1's offer had a PING).
		return sniffed{read: buf, rest: buf[wire.PrefaceSize:], fast: true, version: min(v, wire.Version)}
	}
	read, v, err := wire.ReadOffer(conn, buf)
	if v >= 2 {
		return sniffed{read: read, fast: true, version: min(v, wire.Version)}
	}
	return sniffed{read: read, err: err}
}

// Stop stops the server at once: it closes the listeners and every
// connection, cancels the calls in flight (their clients see UNAVAILABLE)
// and waits for their handlers to return.
func (s *Server) Stop() {
	s.stop(false)
}

// GracefulStop stops the server once the calls in flight are done: it
// closes the listeners, tells every connection that no new calls will be
// started (HTTP/2 and fast-path clients then open new connections, or fail
// their new calls with UNAVAILABLE), and waits for the calls to finish.
func (s *Server) GracefulStop() {
	s.stop(true)
}

func (s *Server) stop(graceful bool) {
	s.mu.Lock()
	s.stopped = true
	s.draining = s.draining || graceful
	ls := make([]*policyListener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	serving := s.serving
	s.serving = true // no grpc.Serve starts after this
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	done := make(chan struct{})
	go func() {
		if graceful {
			s.grpc.GracefulStop()
		} else {
			s.grpc.Stop()
		}
		close(done)
	}()
	s.mu.Lock()
	for c := range s.conns {
		if graceful {
			c.goAway()
		} else {
			c.close(errServerStopped)
		}
	}
	for len(s.conns) > 0 {
		s.connsIdle.Wait()
	}
	s.mu.Unlock()
	<-done
	s.h2.close()
	if serving {
		<-s.h2done
	}
	s.wg.Wait()
	s.workers.stop()
}

// connQueue is the listener the embedded grpc.Server serves: the
// connections that speak HTTP/2.
type connQueue struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) close() { q.once.Do(func() { close(q.done) }) }

// Close ends the queue: grpc.Server's Stop and GracefulStop call it.
func (q *connQueue) Close() error {
	q.close()
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.UnixAddr{Name: "grpcipc", Net: "unix"} }

// gates are the policy listeners of a grpc.Server made with ServerOptions,
// one per local address it serves, without listeners of their own.
type gates struct {
	cfg *serverConfig
	mu  sync.Mutex
	by  map[string]*policyListener
}

// gate returns the gate of c's local address.
func (g *gates) gate(c net.Conn) (*policyListener, error) {
	addr := c.LocalAddr()
	key := addr.Network() + " " + addr.String()
	g.mu.Lock()
	defer g.mu.Unlock()
	if pl, ok := g.by[key]; ok {
		return pl, nil
	}
	ep := endpointOfAddr(addr)
	gd, err := newGuard(g.cfg, ep)
	if err != nil {
		return nil, err
	}
	max := g.cfg.maxPerCaller
	if ep.Transport == TCP {
		max = 0
	}
	pl := newPolicyListener(nil, gd, max)
	pl.inline = true
	if g.by == nil {
		g.by = map[string]*policyListener{}
	}
	g.by[key] = pl
	return pl, nil
}

// chainUnary makes one interceptor of several, the first outermost; nil
// for none.
func chainUnary(is []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return is[0](ctx, req, info, unaryNext(is, 1, info, handler))
	}
}

func unaryNext(is []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(is) {
		return h
	}
	return func(ctx context.Context, req any) (any, error) {
		return is[i](ctx, req, info, unaryNext(is, i+1, info, h))
	}
}

// chainStream makes one interceptor of several, the first outermost; nil
// for none.
func chainStream(is []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return is[0](srv, ss, info, streamNext(is, 1, info, handler))
	}
}

func streamNext(is []grpc.StreamServerInterceptor, i int, info *grpc.StreamServerInfo, h grpc.StreamHandler) grpc.StreamHandler {
	if i == len(is) {
		return h
	}
	return func(srv any, ss grpc.ServerStream) error {
		return is[i](srv, ss, info, streamNext(is, i+1, info, h))
	}
}

// runner is a task for a workerPool.
type runner interface{ run() }

// workerPool runs handlers on long-lived goroutines, whose stacks stay
// grown from call to call; when all are busy a task gets a goroutine of
// its own.
type workerPool struct {
	tasks chan runner
	mu    sync.RWMutex
	n     int
	done  bool
	wg    sync.WaitGroup
}

// maxWorkers is how many goroutines a pool keeps.
const maxWorkers = 64

func newWorkerPool() *workerPool { return &workerPool{tasks: make(chan runner)} }

// run runs t on an idle worker, a new worker, or a goroutine of its own.
func (p *workerPool) run(t runner) {
	p.mu.RLock()
	if !p.done {
		select {
		case p.tasks <- t:
			p.mu.RUnlock()
			return
		default:
		}
	}
	p.mu.RUnlock()
	p.mu.Lock()
	keep := !p.done && p.n < maxWorkers
	if keep {
		p.n++
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if !keep {
		go t.run()
		return
	}
	go func() {
		defer p.wg.Done()
		t.run()
		for t := range p.tasks {
			t.run()
		}
	}()
}

// stop ends the idle workers once the tasks running are done.
func (p *workerPool) stop() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done = true
	close(p.tasks)
	p.mu.Unlock()
	p.wg.Wait()
}
