package grpcipc

import (
	"context"
	"net"
	"sync"

	"github.com/grpcipc/grpcipc/internal/fastpath"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/tap"
)

// refusedConn is a refused connection that gives back its share of the
// refusal bounds when it closes.
type refusedConn struct {
	*admittedConn
	once sync.Once
	done func()
}

func (c *refusedConn) Close() error {
	err := c.admittedConn.Close()
	c.once.Do(c.done)
	return err
}

// refusals answers refused callers: those that offer grpcipc's fast path
// on the fast path (answerRefused), the others through a gRPC server of
// its own, over HTTP/2.
type refusals struct {
	srv   *grpc.Server
	conns *connQueue // for srv
	wg    sync.WaitGroup

	mu      sync.Mutex
	sniffed map[*refusedConn]bool // connections whose first bytes are read, or that hear the fast path
	stopped bool
}

func newRefusals(addr net.Addr) *refusals {
	r := &refusals{conns: newConnQueue(refusedTotal, addr), sniffed: map[*refusedConn]bool{}}
	r.srv = grpc.NewServer(
		grpc.Creds(&transportCreds{}),
		// Every call is refused as its headers arrive: no stream, no
		// handler, none of its bytes read.
		grpc.InTapHandle(func(ctx context.Context, _ *tap.Info) (context.Context, error) {
			return ctx, refusedConnError(ctx)
		}),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			return refusedConnError(ss.Context())
		}),
		grpc.MaxConcurrentStreams(4),
		grpc.ConnectionTimeout(refusalDeadline),
		grpc.ReadBufferSize(4<<10), grpc.WriteBufferSize(4<<10),
		grpc.MaxRecvMsgSize(1<<10),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: refusalDeadline, MaxConnectionAge: refusalDeadline, MaxConnectionAgeGrace: refusalDeadline / 2,
		}),
	)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.srv.Serve(r.conns)
	}()
	return r
}

// refusedConnError is the error of every call on a refused connection.
func refusedConnError(ctx context.Context) error {
	ai, _ := AuthInfoFromContext(ctx)
	var c *Creds
	if ai != nil {
		c = ai.Peer
	}
	return &RefusedError{Caller: c.String()}
}

// take answers a refused connection, on a goroutine of its own until its
// first bytes tell the protocol: the fast path is answered there, HTTP/2
// goes to the gRPC server.
func (r *refusals) take(c *refusedConn) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		c.Close()
		return
	}
	r.sniffed[c] = true
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		h2 := answerRefused(c.admittedConn)
		r.mu.Lock()
		delete(r.sniffed, c)
		h2 = h2 && !r.stopped
		if h2 {
			// Always room: the bounds keep fewer open than the queue holds.
			h2 = r.conns.offer(c)
		}
		r.mu.Unlock()
		if !h2 {
			c.Close()
		}
	}()
}

func (r *refusals) stop() {
	r.mu.Lock()
	r.stopped = true
	for c := range r.sniffed {
		c.admittedConn.Conn.Close() // its goroutine ends, and closes it again
	}
	r.mu.Unlock()
	r.conns.close()
	r.srv.Stop()
	r.wg.Wait()
	r.conns.drain()
}

// answerRefused reads a refused connection's first bytes (its deadline
// set) and, when a grpcipc client offered the fast path, answers its calls
// there with the refusal (fastpath.AnswerRefused), so that it connects
// once and its refusal is logged once. h2 says the connection is left for
// the HTTP/2 refusal, what was read in pc.pending; otherwise it was
// answered, or is of no use (closed, silent, a broken preface, or HTTP/2's
// preface stopped short by the deadline, which the refusal server's
// handshake would give as long again), and the caller closes it.
func answerRefused(pc *admittedConn) (h2 bool) {
	f := fastpath.Sniff(pc.Conn)
	switch {
	case len(f.Read) == 0 || f.Broken:
		return false
	case f.Fast:
		msg := (&RefusedError{Caller: pc.creds.String()}).Error()
		// A tenth of the time is kept for the GOAWAY that ends it.
		fastpath.AnswerRefused(pc.Conn, f.Rest, f.Version, msg, pc.refusedUntil.Add(-refusalDeadline/10), pc.refusedUntil)
		return false
	case f.Err != nil:
		return false
	}
	pc.pending = f.Read
	return true
}

// authorizeTap applies the policy to an HTTP/2 call when its headers
// arrive, before grpc-go makes a stream of it, reads a byte of its request
// or runs a stats handler or interceptor: a caller the policy does not let
// call the method gets PermissionDenied (the RefusedError's text, as on the
// fast path) whether or not the method exists and whatever it sends, and
// its bytes are never decoded. grpc-go runs it on the connection's reading
// goroutine, where it does no I/O but a refusal's log line (rate-limited
// per caller).
func authorizeTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if err := authorizeCall(ctx, info.FullMethodName); err != nil {
		return ctx, err
	}
	return ctx, nil
}

// authorizeUnary and authorizeStream apply the policy again as the
// outermost interceptors: a second line behind authorizeTap, which has
// already refused every call they would refuse.
func authorizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := authorizeCall(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := authorizeCall(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// authorizeCall applies the policy of the connection's server to a call.
func authorizeCall(ctx context.Context, method string) error {
	ai, ok := AuthInfoFromContext(ctx)
	if !ok || ai.adm == nil || ai.adm.policy == nil {
		return nil // not checked by a grpcipc server: no policy to apply
	}
	return ai.authorize(method)
}

// authorize applies the policy to a call of method on this connection.
func (ai *AuthInfo) authorize(method string) error {
	if ai.refused {
		return &RefusedError{Caller: ai.Peer.String()}
	}
	g := ai.adm
	ok, rule := g.policy.authorize(method, ai.Peer, g.self)
	if ok {
		return nil
	}
	return g.refuse(method, ai.Peer, rule)
}
