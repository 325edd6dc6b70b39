package grpcipc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastpath"
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

	fast *fastpath.Server // the fast path's connections, its method table and workers

	mu        sync.Mutex
	serving   bool // grpc serves h2
	stopped   bool // Stop or GracefulStop began
	listeners map[*admitListener]bool
	wg        sync.WaitGroup
	h2done    chan struct{}
}

// NewServer makes a server. Options set the policy ([WithPolicy]), the
// logger ([WithLogger]), TLS, limits, interceptors and stats handlers, for both
// protocols; [WithGRPCServerOptions] adds grpc-go options that apply to
// HTTP/2 only.
//
// TLS ([WithTLS], [WithPins]): the server then serves HTTP/2 over TLS only,
// and grpcipc's clients given TLS options speak HTTP/2 to it. The fast path
// runs over local connections without TLS, whose peer the kernel names.
// tcp listeners are served HTTP/2 only.
//
// NewServer does no I/O and starts nothing: [Server.Serve] does. It returns
// an error, naming the option, when an option cannot be applied: a nil
// option, policy or logger; a limit or timeout that is not positive; a
// memory budget too small for one message of the receive limit, or a
// caller's budget smaller than a connection's; grpc.InTapHandle among
// [WithGRPCServerOptions]; a TLS configuration without a certificate, or a
// pin that does not parse.
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
		listeners: map[*admitListener]bool{},
		h2done:    make(chan struct{}),
		fast: fastpath.NewServer(fastpath.ServerConfig{
			Unary: cfg.unary, Stream: cfg.stream, Stats: cfg.stats,
			MaxRecv: cfg.maxRecv, MaxSend: cfg.maxSend,
			ConnBudget: cfg.connBudget, CallerBudget: cfg.callerBudget,
			FrameTimeout:    cfg.handshakeTimeout,
			MaxFilesPerCall: cfg.maxFilesPerCall,
		}),
	}
	s.grpc = grpc.NewServer(append(append(localServerOptions(),
		grpc.UnknownServiceHandler(s.unknownService)),
		append(cfg.grpcOptions(),
			grpc.Creds(creds),
			grpc.ConnectionTimeout(cfg.handshakeTimeout))...)...)
	s.h2 = newConnQueue(0, &net.UnixAddr{Name: "grpcipc", Net: "unix"})
	return s, nil
}

// RegisterService registers a service and its implementation, as
// [grpc.Server.RegisterService] does (generated code calls it). It must be
// called before Serve.
func (s *Server) RegisterService(sd *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(sd, impl) // checks impl and duplicates, as grpc-go does
	s.fast.RegisterService(sd, impl)
}

// unknownService answers HTTP/2 calls of a method the server lacks, as
// the fast path does (grpc-go's words), unless the caller is refused.
func (s *Server) unknownService(_ any, ss grpc.ServerStream) error {
	ctx := ss.Context()
	method, _ := grpc.Method(ctx)
	if err := authorizeCall(ctx, method); err != nil {
		return err
	}
	return s.fast.Unimplemented(method)
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
	pl, err := s.admitting(ep, l, policy)
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
		pc := c.(*admittedConn)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handleRaw(pc)
		}()
	}
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
func (s *Server) handleRaw(pc *admittedConn) {
	if pc.adm.tcp || s.creds.tls != nil {
		s.h2.put(pc) // TLS first: the handshake tells the rest
		return
	}
	if pc.adm.ep.Transport != Inherited {
		// The handshake timeout is for strangers; the inherited
		// connection is the one to the parent, which proved who it is
		// and may make its first call when it likes: dropped, it would
		// not come back.
		pc.Conn.SetReadDeadline(time.Now().Add(s.cfg.handshakeTimeout))
	}
	f := fastpath.Sniff(pc.Conn)
	pc.Conn.SetReadDeadline(time.Time{})
	switch {
	case len(f.Read) == 0:
		pc.handshaken.Store(true)
		var ne net.Error
		if errors.As(f.Err, &ne) && ne.Timeout() {
			pc.mu.Lock()
			pc.reportLocked(pc.prefaceProblem(true))
			pc.mu.Unlock()
		}
		pc.Close()
	case !f.Fast && !f.Broken && f.Err != nil:
		// HTTP/2's preface, or its first frame, stopped short within the
		// handshake timeout: handed to grpc-go, it would have as long
		// again (a client that trickled it held its connection twice the
		// timeout).
		pc.handshaken.Store(true)
		pc.mu.Lock()
		pc.reportLocked(pc.sniffProblem(f))
		pc.mu.Unlock()
		pc.Close()
	case !f.Fast && !f.Broken:
		pc.pending = f.Read
		s.h2.put(pc)
	case f.Broken:
		pc.handshaken.Store(true)
		why := "its first bytes are neither HTTP/2's preface nor grpcipc's"
		if f.Err != nil {
			why = fmt.Sprintf("grpcipc's preface stopped after %d bytes", len(f.Read))
		}
		pc.mu.Lock()
		pc.reportLocked(why, slog.LevelWarn, "first_bytes", fmt.Sprintf("%q", f.Read[:min(len(f.Read), 16)]))
		pc.mu.Unlock()
		pc.Close()
	default:
		pc.handshaken.Store(true)
		pc.mu.Lock()
		pc.prefaceOK = true
		pc.watched.Store(true)
		pc.ai = pc.fastAuthInfo()
		pc.mu.Unlock()
		s.fast.Serve(pc.Conn, pc, f.Version, f.Rest)
	}
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
	// Before a listener closes: a connection that arrives while they close
	// (a listener of the caller's or systemd's may be slow to) starts no
	// call.
	s.fast.Stopping(graceful)
	ls := make([]*admitListener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	serving := s.serving // no grpc.Serve starts after this: Serve sees stopped
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
	s.fast.Shutdown(graceful)
	<-done
	s.h2.close()
	if serving {
		<-s.h2done
	}
	s.wg.Wait()
	s.fast.Close()
}
