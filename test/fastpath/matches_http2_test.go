package grpcipc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // registers "gzip" for grpc.UseCompressor
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The fast path (docs/protocol.md) must be invisible: what handlers,
// interceptors, stats handlers and callers see on it is what they see on
// HTTP/2, grpc-go's own transport, on the same grpcipc.Server. Every check
// below runs over both: a default client (which must speak the fast path)
// and a WithHTTP2 client.

// fpProtocol is one way a grpcipc client talks to a grpcipc.Server.
type fpProtocol struct {
	name string
	want string // ClientConn.Protocol after the first call
	opts []grpcipc.ClientOption
}

var fpProtocols = []fpProtocol{
	{"fast", grpcipc.ProtocolFast, nil},
	{"http2", grpcipc.ProtocolHTTP2, []grpcipc.ClientOption{grpcipc.WithHTTP2()}},
}

// fpServerMaxRecv is the servers' WithMaxRecvMsgSize in these tests.
const fpServerMaxRecv = 256 << 10

// fpNoLeaks checks, when the test ends (after its other cleanups: the
// servers' Stop and the clients' Close), that no goroutine it started is
// left.
func fpNoLeaks(t *testing.T) {
	t.Helper()
	opts := append(slices.Clone(testutil.LeakOptions), goleak.IgnoreCurrent())
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// fpLog is a server's log, shown when a test fails.
type fpLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *fpLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *fpLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fpEnv is a grpcipc.Server serving fpService on an endpoint.
type fpEnv struct {
	endpoint string
	srv      *grpcipc.Server
	svc      *fpService
	stats    *fpStats
	done     chan struct{} // closed when Serve returns
}

// stop stops the server at once and waits for Serve to return.
func (e *fpEnv) stop() {
	e.srv.Stop()
	<-e.done
}

// fpServe serves svc on endpoint with a grpcipc.NewServer carrying two
// unary and two stream interceptors, a stats handler and a receive limit
// of fpServerMaxRecv, until the test ends or stop.
func fpServe(t *testing.T, endpoint string, svc *fpService, extra ...grpcipc.ServerOption) *fpEnv {
	t.Helper()
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatalf("Listen(%s): %v", endpoint, err)
	}
	log := &fpLog{}
	st := &fpStats{}
	srv, err := grpcipc.NewServer(append([]grpcipc.ServerOption{
		grpcipc.WithUnaryInterceptor(fpUnaryTrace("u1"), fpUnaryTrace("u2")),
		grpcipc.WithStreamInterceptor(fpStreamTrace("s1"), fpStreamTrace("s2")),
		grpcipc.WithStatsHandler(st),
		grpcipc.WithMaxRecvMsgSize(fpServerMaxRecv),
		grpcipc.WithLogger(slog.New(slog.NewTextHandler(log, nil))),
	}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, svc)
	e := &fpEnv{endpoint: endpoint, srv: srv, svc: svc, stats: st, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		if err := srv.Serve(l); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", log.String())
		}
	})
	return e
}

// fpConnect makes a client of protocol p, makes one call through it and
// checks that it speaks the protocol it should.
func fpConnect(t *testing.T, endpoint string, p fpProtocol, opts ...grpcipc.ClientOption) *grpcipc.ClientConn {
	t.Helper()
	conn := newClient(t, endpoint, append(slices.Clone(p.opts), opts...)...)
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(ctxFor(t), &testgrpc.Empty{}); err != nil {
		t.Fatalf("first call (%s): %v", p.name, err)
	}
	if got := conn.Protocol(); got != p.want {
		t.Fatalf("the client speaks %q, want %q", got, p.want)
	}
	return conn
}

var fpIDs atomic.Int64

// fpCall returns a context for one call: the mode the handler should run
// in, a fresh call id (returned) that the handler records what it saw
// under, and a 10 s timeout.
func fpCall(t *testing.T, mode string) (context.Context, string) {
	t.Helper()
	id := fmt.Sprintf("call-%d", fpIDs.Add(1))
	ctx := metadata.AppendToOutgoingContext(ctxFor(t), "x-call-id", id, "x-mode", mode)
	return ctx, id
}

// fpSeen is what a handler saw of its call.
type fpSeen struct {
	method      string
	methodOK    bool
	md          metadata.MD
	deadline    time.Time
	hasDeadline bool
	peer        *peer.Peer
	peerOK      bool
	ai          *grpcipc.AuthInfo
	aiOK        bool
	trace       []string // the server interceptors that ran before the handler
}

// fpService is grpc-go's interop TestService with handlers that record
// what they see and behave as the call's x-mode metadata asks.
type fpService struct {
	testgrpc.UnimplementedTestServiceServer

	mu   sync.Mutex
	seen map[string]*fpSeen

	entered   chan string   // "slow" and "wait-cancel" handlers have started
	release   chan struct{} // closed: "slow" handlers return
	ctxEnded  chan error    // "wait-cancel": the handler context's error once it ended, nil if it never did
	floodSent atomic.Int64  // messages "flood" streams have sent
	floodDone chan error    // "flood" handlers' Send error
}

func newFPService() *fpService {
	return &fpService{
		seen:      map[string]*fpSeen{},
		entered:   make(chan string, 16),
		release:   make(chan struct{}),
		ctxEnded:  make(chan error, 16),
		floodDone: make(chan error, 16),
	}
}

func mdFirst(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// record notes what the handler of ctx sees, under its call id, and
// returns its mode.
func (s *fpService) record(ctx context.Context) (mode, id string) {
	md, _ := metadata.FromIncomingContext(ctx)
	id = mdFirst(md, "x-call-id")
	if r, ok := ctx.Value(fpRPCKey{}).(*fpRPC); ok {
		r.setID(id)
	}
	if id == "" {
		return mdFirst(md, "x-mode"), ""
	}
	x := &fpSeen{md: md.Copy()}
	x.method, x.methodOK = grpc.Method(ctx)
	x.deadline, x.hasDeadline = ctx.Deadline()
	x.peer, x.peerOK = peer.FromContext(ctx)
	x.ai, x.aiOK = grpcipc.AuthInfoFromContext(ctx)
	x.trace, _ = ctx.Value(fpTraceKey{}).([]string)
	s.mu.Lock()
	s.seen[id] = x
	s.mu.Unlock()
	return mdFirst(md, "x-mode"), id
}

// seenBy returns what the handler of call id saw; nil if no handler ran.
func (s *fpService) seenBy(id string) *fpSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[id]
}

func (s *fpService) mustSee(t *testing.T, id string) *fpSeen {
	t.Helper()
	x := s.seenBy(id)
	if x == nil {
		t.Fatalf("no handler ran for call %s", id)
	}
	return x
}

var fpErrorInfo = &errdetails.ErrorInfo{Reason: "QUOTA", Domain: "grpcipc.test", Metadata: map[string]string{"k": "v"}}

func (s *fpService) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	s.record(ctx)
	return &testgrpc.Empty{}, nil
}

func (s *fpService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	mode, id := s.record(ctx)
	switch mode {
	case "headers":
		if err := grpc.SetHeader(ctx, metadata.Pairs("h-set", "1")); err != nil {
			return nil, err
		}
		if err := grpc.SendHeader(ctx, metadata.Pairs("h-sent", "2")); err != nil {
			return nil, err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs("t-set", "3", "t-data-bin", "\x00\xff")); err != nil {
			return nil, err
		}
	case "details":
		st, err := status.New(codes.FailedPrecondition, "precondition failed").WithDetails(fpErrorInfo)
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	case "wait-cancel":
		s.entered <- id
		select {
		case <-ctx.Done():
			s.ctxEnded <- ctx.Err()
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(10 * time.Second):
			s.ctxEnded <- nil
			return nil, status.Error(codes.Internal, "the handler's context never ended")
		}
	case "slow":
		s.entered <- id
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (s *fpService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	mode, _ := s.record(stream.Context())
	switch mode {
	case "flood": // sends until the stream ends, or x-flood-max messages; its client does not read
		md, _ := metadata.FromIncomingContext(stream.Context())
		size, limit := 64<<10, -1
		fmt.Sscan(mdFirst(md, "x-flood-size"), &size)
		fmt.Sscan(mdFirst(md, "x-flood-max"), &limit)
		msg := &testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, size)}}
		for n := 0; n != limit; n++ {
			if err := stream.Send(msg); err != nil {
				s.floodDone <- err
				return err
			}
			s.floodSent.Add(1)
		}
		<-stream.Context().Done()
		s.floodDone <- stream.Context().Err()
		return status.FromContextError(stream.Context().Err()).Err()
	case "headers":
		if err := stream.SetHeader(metadata.Pairs("h-set", "1")); err != nil {
			return err
		}
		if err := stream.SendHeader(metadata.Pairs("h-sent", "2")); err != nil {
			return err
		}
	}
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	if mode == "headers" {
		stream.SetTrailer(metadata.Pairs("t-set", "3", "t-data-bin", "\x00\xff"))
	}
	return nil
}

// StreamingInputCall sums the sizes of the payloads it receives.
func (s *fpService) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	s.record(stream.Context())
	total := 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

// Server interceptors: each adds its name to the context's trace before
// the handler, and to the "x-after" trailer after it, so that the order
// they ran in both ways is seen.
type fpTraceKey struct{}

func fpAddTrace(ctx context.Context, name string) context.Context {
	prev, _ := ctx.Value(fpTraceKey{}).([]string)
	return context.WithValue(ctx, fpTraceKey{}, append(slices.Clone(prev), name))
}

func fpUnaryTrace(name string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx = fpAddTrace(ctx, name)
		resp, err := handler(ctx, req)
		grpc.SetTrailer(ctx, metadata.Pairs("x-after", name))
		return resp, err
	}
}

type fpTracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *fpTracedStream) Context() context.Context { return s.ctx }

func fpStreamTrace(name string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, &fpTracedStream{ServerStream: ss, ctx: fpAddTrace(ss.Context(), name)})
		ss.SetTrailer(metadata.Pairs("x-after", name))
		return err
	}
}

// fpStats is a stats.Handler that records each RPC's events.
type fpStats struct {
	mu   sync.Mutex
	rpcs []*fpRPC
}

type fpRPCKey struct{}

// fpRPC is what a stats handler saw of one RPC.
type fpRPC struct {
	method string
	ended  chan struct{}

	mu      sync.Mutex
	id      string // the call's x-call-id, set by InHeader or the handler
	events  []string
	inLens  []int
	outLens []int
}

func (r *fpRPC) setID(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.id == "" {
		r.id = id
	}
}

func (s *fpStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	r := &fpRPC{method: info.FullMethodName, ended: make(chan struct{})}
	s.mu.Lock()
	s.rpcs = append(s.rpcs, r)
	s.mu.Unlock()
	return context.WithValue(ctx, fpRPCKey{}, r)
}

func (s *fpStats) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	r, ok := ctx.Value(fpRPCKey{}).(*fpRPC)
	if !ok {
		return
	}
	if h, ok := rs.(*stats.InHeader); ok {
		r.setID(mdFirst(h.Header, "x-call-id"))
	}
	r.mu.Lock()
	r.events = append(r.events, strings.TrimPrefix(fmt.Sprintf("%T", rs), "*stats."))
	switch p := rs.(type) {
	case *stats.InPayload:
		r.inLens = append(r.inLens, p.Length)
	case *stats.OutPayload:
		r.outLens = append(r.outLens, p.Length)
	}
	r.mu.Unlock()
	if _, ok := rs.(*stats.End); ok {
		close(r.ended)
	}
}

func (s *fpStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (s *fpStats) HandleConn(context.Context, stats.ConnStats)                       {}

// rpc waits for the End of call id's RPC and returns what was recorded.
func (s *fpStats) rpc(t *testing.T, id string) (events []string, inLens, outLens []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		var found *fpRPC
		for _, r := range s.rpcs {
			r.mu.Lock()
			if r.id == id {
				found = r
			}
			r.mu.Unlock()
		}
		s.mu.Unlock()
		if found != nil {
			select {
			case <-found.ended:
			case <-time.After(time.Until(deadline)):
				found.mu.Lock()
				defer found.mu.Unlock()
				t.Fatalf("the stats handler saw no End for call %s; it saw %v", id, found.events)
			}
			found.mu.Lock()
			defer found.mu.Unlock()
			return slices.Clone(found.events), slices.Clone(found.inLens), slices.Clone(found.outLens)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stats handler saw no RPC for call %s", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fpToken is per-RPC credentials that need a secure channel (a local
// socket is one) and record the RequestInfo's method.
type fpToken struct {
	mu     sync.Mutex
	method string
}

func (c *fpToken) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	c.mu.Lock()
	c.method = ri.Method
	c.mu.Unlock()
	return map[string]string{"authorization": "Bearer fp-token"}, nil
}

func (*fpToken) RequireTransportSecurity() bool { return true }

// checkOurIdentity: creds are this process's user (and pid).
func checkOurIdentity(t *testing.T, what string, c *grpcipc.Creds) {
	t.Helper()
	if c == nil {
		t.Errorf("%s: no peer credentials", what)
		return
	}
	if runtime.GOOS == "windows" {
		if _, ok := c.SID(); !ok {
			t.Errorf("%s: no SID in %v", what, c)
		}
	} else if uid, ok := c.UID(); !ok || uid != os.Getuid() {
		t.Errorf("%s: uid %d (known: %v), want ours, %d", what, uid, ok, os.Getuid())
	}
	if pid, ok := c.PID(); !ok || pid != os.Getpid() {
		t.Errorf("%s: pid %d (known: %v), want %d (this process)", what, pid, ok, os.Getpid())
	}
}

// recvAll reads a stream to its end and returns the sizes of its messages
// and the error that ended it (nil for io.EOF).
func recvAll(stream grpc.ServerStreamingClient[testgrpc.StreamingOutputCallResponse]) ([]int, error) {
	var sizes []int
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return sizes, nil
		}
		if err != nil {
			return sizes, err
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: %v; want %v", what, err, want)
	}
}

// TestFastPathMatchesHTTP2: each check holds, alike, for a client on the
// fast path and for one on HTTP/2, against the same grpcipc.Server.
func TestFastPathMatchesHTTP2(t *testing.T) {
	fpNoLeaks(t)
	endpoint := testutil.Endpoint(t)
	ep, err := grpcipc.ParseEndpoint(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	env := fpServe(t, endpoint, newFPService())
	svc := env.svc
	conns := map[string]*grpcipc.ClientConn{}
	for _, p := range fpProtocols {
		conns[p.name] = fpConnect(t, endpoint, p)
	}
	const service = "/grpc.testing.TestService/"

	checks := []struct {
		name string
		f    func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient)
	}{
		{"unary server interceptors run in order", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			var tr metadata.MD
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Trailer(&tr)); err != nil {
				t.Fatal(err)
			}
			if got := svc.mustSee(t, id).trace; !slices.Equal(got, []string{"u1", "u2"}) {
				t.Errorf("interceptors before the handler: %v, want [u1 u2]", got)
			}
			if got := tr.Get("x-after"); !slices.Equal(got, []string{"u2", "u1"}) {
				t.Errorf("interceptors after the handler: %v, want [u2 u1]", got)
			}
		}},
		{"stream server interceptors run in order", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := recvAll(stream); err != nil {
				t.Fatal(err)
			}
			if got := svc.mustSee(t, id).trace; !slices.Equal(got, []string{"s1", "s2"}) {
				t.Errorf("interceptors before the handler: %v, want [s1 s2]", got)
			}
			if got := stream.Trailer().Get("x-after"); !slices.Equal(got, []string{"s2", "s1"}) {
				t.Errorf("interceptors after the handler: %v, want [s2 s1]", got)
			}
		}},
		{"peer and AuthInfo in the handler", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			x := svc.mustSee(t, id)
			if !x.peerOK || x.peer.Addr == nil {
				t.Fatalf("peer.FromContext: %v, %v", x.peer, x.peerOK)
			}
			if x.peer.Addr.Network() != "unix" && runtime.GOOS != "windows" {
				t.Errorf("peer address %v on network %q, want unix", x.peer.Addr, x.peer.Addr.Network())
			}
			if !x.aiOK {
				t.Fatalf("AuthInfoFromContext: none; the peer's AuthInfo is %T", x.peer.AuthInfo)
			}
			if x.ai.Transport != ep.Transport {
				t.Errorf("AuthInfo.Transport %v, want %v", x.ai.Transport, ep.Transport)
			}
			if x.ai.SecurityLevel != credentials.PrivacyAndIntegrity {
				t.Errorf("security level %v, want PrivacyAndIntegrity", x.ai.SecurityLevel)
			}
			checkOurIdentity(t, "the caller in the handler", x.ai.Peer)
		}},
		{"header and trailer metadata, unary", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "headers")
			var h, tr metadata.MD
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 3}, grpc.Header(&h), grpc.Trailer(&tr)); err != nil {
				t.Fatal(err)
			}
			checkHeaderTrailer(t, h, tr)
		}},
		{"header and trailer metadata, stream", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "headers")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 2}}})
			if err != nil {
				t.Fatal(err)
			}
			h, err := stream.Header()
			if err != nil {
				t.Fatalf("Header: %v", err)
			}
			sizes, err := recvAll(stream)
			if err != nil || !slices.Equal(sizes, []int{1, 2}) {
				t.Fatalf("messages %v, %v; want [1 2]", sizes, err)
			}
			checkHeaderTrailer(t, h, stream.Trailer())
		}},
		{"incoming metadata, with a -bin key", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			raw := "\x00\x01\x7f\x80\xfe\xff" + "é"
			ctx = metadata.AppendToOutgoingContext(ctx, "x-one", "1", "x-multi", "a", "x-multi", "b", "x-raw-bin", raw)
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			md := svc.mustSee(t, id).md
			for k, want := range map[string][]string{"x-one": {"1"}, "x-multi": {"a", "b"}, "x-raw-bin": {raw}, "x-call-id": {id}} {
				if got := md.Get(k); !slices.Equal(got, want) {
					t.Errorf("metadata %q: %q, want %q", k, got, want)
				}
			}
			var keys []string
			for k := range md {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Logf("incoming metadata keys on %s: %v", p.name, keys)
		}},
		{"grpc.Method", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if x := svc.mustSee(t, id); !x.methodOK || x.method != service+"UnaryCall" {
				t.Errorf("grpc.Method = %q, %v; want %q", x.method, x.methodOK, service+"UnaryCall")
			}
			ctx, id = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
			if err == nil {
				_, err = recvAll(stream)
			}
			if err != nil {
				t.Fatal(err)
			}
			if x := svc.mustSee(t, id); !x.methodOK || x.method != service+"StreamingOutputCall" {
				t.Errorf("grpc.Method in a stream = %q, %v; want %q", x.method, x.methodOK, service+"StreamingOutputCall")
			}
		}},
		{"the client's deadline is the handler's", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			dl := time.Now().Add(3 * time.Second)
			ctx, cancel := context.WithDeadline(ctx, dl)
			defer cancel()
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			x := svc.mustSee(t, id)
			if !x.hasDeadline {
				t.Fatal("the handler's context has no deadline")
			}
			if d := x.deadline.Sub(dl); d < -500*time.Millisecond || d > 500*time.Millisecond {
				t.Errorf("the handler's deadline is %v from the client's", d)
			}
			// Without a deadline, none.
			ctx, id = fpCall(t, "")
			if _, err := client.UnaryCall(context.WithoutCancel(ctx), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if x := svc.mustSee(t, id); x.hasDeadline {
				t.Errorf("a call without a deadline has one in the handler: %v", time.Until(x.deadline))
			}
		}},
		{"a client cancel ends the handler's context", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "wait-cancel")
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				done <- err
			}()
			select {
			case <-svc.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the handler did not start")
			}
			cancel()
			select {
			case err := <-svc.ctxEnded:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("the handler's context ended with %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the handler's context did not end within 5 s of the client's cancel")
			}
			wantCode(t, "the cancelled call", <-done, codes.Canceled)
		}},
		{"status details round-trip", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "details")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			st := status.Convert(err)
			if st.Code() != codes.FailedPrecondition || st.Message() != "precondition failed" {
				t.Fatalf("status %v, %q; want FailedPrecondition, \"precondition failed\"", st.Code(), st.Message())
			}
			ds := st.Details()
			if len(ds) != 1 {
				t.Fatalf("details %v; want one ErrorInfo", ds)
			}
			if ei, ok := ds[0].(*errdetails.ErrorInfo); !ok || !proto.Equal(ei, fpErrorInfo) {
				t.Errorf("detail %v; want %v", ds[0], fpErrorInfo)
			}
		}},
		{"unknown service and method are Unimplemented", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			err := conn.Invoke(ctxFor(t), "/no.such.Service/Call", &testgrpc.Empty{}, &testgrpc.Empty{})
			wantCode(t, "unknown service", err, codes.Unimplemented)
			if got, want := status.Convert(err).Message(), "unknown service no.such.Service"; got != want {
				t.Errorf("unknown service: message %q, want grpc-go's %q", got, want)
			}
			err = conn.Invoke(ctxFor(t), service+"NoSuchMethod", &testgrpc.Empty{}, &testgrpc.Empty{})
			wantCode(t, "unknown method", err, codes.Unimplemented)
			if got, want := status.Convert(err).Message(), "unknown method NoSuchMethod for service grpc.testing.TestService"; got != want {
				t.Errorf("unknown method: message %q, want grpc-go's %q", got, want)
			}
			stream, err := conn.NewStream(ctxFor(t), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, service+"NoSuchStream")
			if err == nil {
				stream.CloseSend()
				err = stream.RecvMsg(&testgrpc.Empty{})
			}
			wantCode(t, "unknown streaming method", err, codes.Unimplemented)
		}},
		{"compression", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}, grpc.UseCompressor("gzip"))
			sctx, _ := fpCall(t, "")
			stream, serr := client.StreamingOutputCall(sctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}}}, grpc.UseCompressor("gzip"))
			if serr == nil {
				_, serr = recvAll(stream)
			}
			if p.want == grpcipc.ProtocolHTTP2 {
				if err != nil || serr != nil {
					t.Errorf("gzip over HTTP/2: unary %v, stream %v; want both OK", err, serr)
				}
				return
			}
			for what, err := range map[string]error{"unary": err, "stream": serr} {
				st := status.Convert(err)
				if st.Code() != codes.Unimplemented || !strings.Contains(strings.ToLower(st.Message()), "compress") {
					t.Errorf("gzip on the fast path (%s): %v; want Unimplemented, a message about compression", what, err)
				}
			}
			if svc.seenBy(id) != nil {
				t.Error("the handler ran for a call that asked for compression on the fast path")
			}
		}},
		{"MaxCallRecvMsgSize", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 64 << 10}, grpc.MaxCallRecvMsgSize(1024))
			wantCode(t, "a 64 KiB reply over a 1 KiB call limit", err, codes.ResourceExhausted)
			ctx, _ = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 64 << 10}}}, grpc.MaxCallRecvMsgSize(1024))
			if err == nil {
				_, err = recvAll(stream)
			}
			wantCode(t, "a streamed 64 KiB message over a 1 KiB call limit", err, codes.ResourceExhausted)
			ctx, _ = fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 64 << 10}); err != nil {
				t.Errorf("the same reply without the limit, after: %v", err)
			}
		}},
		{"server WithMaxRecvMsgSize", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			big := &testgrpc.Payload{Body: make([]byte, fpServerMaxRecv+1)}
			ctx, id := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: big})
			wantCode(t, "a request over the server's limit", err, codes.ResourceExhausted)
			if svc.seenBy(id) != nil {
				t.Error("the handler ran for a request over the server's limit")
			}
			ctx, _ = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{Payload: big})
			if err == nil {
				_, err = recvAll(stream)
			}
			wantCode(t, "a stream's request over the server's limit", err, codes.ResourceExhausted)
			// A client stream: small, over the limit, small. The handler
			// must not see the small ones as the whole stream.
			ctx, _ = fpCall(t, "")
			up, err := client.StreamingInputCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{10, fpServerMaxRecv + 1, 20} {
				if err := up.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
					break // io.EOF: the call ended; CloseAndRecv says how
				}
			}
			res, err := up.CloseAndRecv()
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("a client stream with a message over the server's limit: %v (handler summed %d bytes); want ResourceExhausted", err, res.GetAggregatedPayloadSize())
			}
			ctx, _ = fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, fpServerMaxRecv/2)}}); err != nil {
				t.Errorf("a request within the limit, after: %v", err)
			}
		}},
		{"MaxCallSendMsgSize", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, 4096)}}, grpc.MaxCallSendMsgSize(1024))
			wantCode(t, "a 4 KiB request over a 1 KiB send limit", err, codes.ResourceExhausted)
			if svc.seenBy(id) != nil {
				t.Error("the handler ran for a request over the client's send limit")
			}
			ctx, _ = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, 4096)}}, grpc.MaxCallSendMsgSize(1024))
			if err == nil {
				_, err = recvAll(stream)
			}
			wantCode(t, "a stream's 4 KiB request over a 1 KiB send limit", err, codes.ResourceExhausted)
		}},
		{"PerRPCCredentials call option", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			creds := &fpToken{}
			ctx, id := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.PerRPCCredentials(creds)); err != nil {
				t.Fatal(err)
			}
			if got := svc.mustSee(t, id).md.Get("authorization"); !slices.Equal(got, []string{"Bearer fp-token"}) {
				t.Errorf("authorization metadata in the handler: %q", got)
			}
			creds.mu.Lock()
			defer creds.mu.Unlock()
			if creds.method != service+"UnaryCall" {
				t.Errorf("the credentials' RequestInfo.Method: %q, want %q", creds.method, service+"UnaryCall")
			}
		}},
		{"client interceptors", func(t *testing.T, p fpProtocol, _ *grpcipc.ClientConn, _ testgrpc.TestServiceClient) {
			var mu sync.Mutex
			var order []string
			var ccNil []bool
			note := func(s string, cc *grpc.ClientConn) {
				mu.Lock()
				defer mu.Unlock()
				order = append(order, s)
				ccNil = append(ccNil, cc == nil)
			}
			unary := func(name string) grpc.UnaryClientInterceptor {
				return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
					note(name+">"+method, cc)
					err := invoker(ctx, method, req, reply, cc, opts...)
					note(name+"<", cc)
					return err
				}
			}
			streaming := func(name string) grpc.StreamClientInterceptor {
				return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
					note(name+">"+method, cc)
					s, err := streamer(ctx, desc, cc, method, opts...)
					note(name+"<", cc)
					return s, err
				}
			}
			conn := fpConnect(t, endpoint, p,
				grpcipc.WithUnaryClientInterceptor(unary("c1"), unary("c2")),
				grpcipc.WithStreamClientInterceptor(streaming("cs1"), streaming("cs2")))
			client := testgrpc.NewTestServiceClient(conn)
			mu.Lock()
			order, ccNil = nil, nil
			mu.Unlock()
			ctx, _ := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			ctx, _ = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}})
			if err == nil {
				_, err = recvAll(stream)
			}
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			want := []string{"c1>" + service + "UnaryCall", "c2>" + service + "UnaryCall", "c2<", "c1<",
				"cs1>" + service + "StreamingOutputCall", "cs2>" + service + "StreamingOutputCall", "cs2<", "cs1<"}
			if !slices.Equal(order, want) {
				t.Errorf("client interceptors ran %q, want %q", order, want)
			}
			// Documented: on the fast path the interceptors' *grpc.ClientConn is nil.
			for i, isNil := range ccNil {
				if isNil != (p.want == grpcipc.ProtocolFast) {
					t.Errorf("interceptor call %d (%s): cc == nil is %v on %s", i, order[i], isNil, p.name)
				}
			}
		}},
		{"grpc.Peer call option", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			var pr peer.Peer
			ctx, _ := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Peer(&pr)); err != nil {
				t.Fatal(err)
			}
			ai, ok := grpcipc.AuthInfoFromPeer(&pr)
			if !ok {
				t.Fatalf("the call's peer has no grpcipc AuthInfo: %#v", pr.AuthInfo)
			}
			checkOurIdentity(t, "the server as the client saw it", ai.Peer)
			if pr.Addr == nil {
				t.Error("the call's peer has no address")
			}
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range fpProtocols {
				t.Run(p.name, func(t *testing.T) {
					c.f(t, p, conns[p.name], testgrpc.NewTestServiceClient(conns[p.name]))
				})
			}
		})
	}

	t.Run("stats handler events", func(t *testing.T) {
		type seq struct {
			events          []string
			inLens, outLens []int
		}
		got := map[string]map[string]seq{} // call kind -> protocol -> what the handler saw
		for _, p := range fpProtocols {
			client := testgrpc.NewTestServiceClient(conns[p.name])
			record := func(kind, id string) {
				var s seq
				s.events, s.inLens, s.outLens = env.stats.rpc(t, id)
				if got[kind] == nil {
					got[kind] = map[string]seq{}
				}
				got[kind][p.name] = s
			}
			ctx, id := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100, Payload: &testgrpc.Payload{Body: make([]byte, 50)}}); err != nil {
				t.Fatal(err)
			}
			record("unary", id)
			ctx, id = fpCall(t, "headers")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 7}); err != nil {
				t.Fatal(err)
			}
			record("unary with header metadata", id)
			ctx, id = fpCall(t, "details")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.FailedPrecondition {
				t.Fatal(err)
			}
			record("unary failing", id)
			ctx, id = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 2000}, {Size: 30}}})
			if err == nil {
				_, err = recvAll(stream)
			}
			if err != nil {
				t.Fatal(err)
			}
			record("server-streaming", id)
		}
		kinds := make([]string, 0, len(got))
		for k := range got {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, kind := range kinds {
			fast, h2 := got[kind]["fast"], got[kind]["http2"]
			t.Logf("%s: http2 %v in %v out %v; fast %v in %v out %v", kind, h2.events, h2.inLens, h2.outLens, fast.events, fast.inLens, fast.outLens)
			if !slices.Equal(fast.events, h2.events) {
				t.Errorf("%s call: the stats handler saw\n  fast path: %v\n  HTTP/2:    %v", kind, fast.events, h2.events)
			}
			if !slices.Equal(fast.inLens, h2.inLens) || !slices.Equal(fast.outLens, h2.outLens) {
				t.Errorf("%s call: payload lengths in %v out %v on the fast path, in %v out %v on HTTP/2", kind, fast.inLens, fast.outLens, h2.inLens, h2.outLens)
			}
		}
	})

	for _, p := range fpProtocols {
		if got := conns[p.name].Protocol(); got != p.want {
			t.Errorf("after the checks the %s client speaks %q", p.name, got)
		}
	}
}

// checkHeaderTrailer: h and tr are what the "headers" mode handlers set.
func checkHeaderTrailer(t *testing.T, h, tr metadata.MD) {
	t.Helper()
	for k, want := range map[string]string{"h-set": "1", "h-sent": "2"} {
		if got := h.Get(k); !slices.Equal(got, []string{want}) {
			t.Errorf("header %q: %q, want [%q] (header %v)", k, got, want, h)
		}
	}
	for k, want := range map[string]string{"t-set": "3", "t-data-bin": "\x00\xff"} {
		if got := tr.Get(k); !slices.Equal(got, []string{want}) {
			t.Errorf("trailer %q: %q, want [%q] (trailer %v)", k, got, want, tr)
		}
	}
	if got := h.Get("t-set"); len(got) > 0 {
		t.Errorf("trailer metadata in the header: %v", h)
	}
}

// TestFastPathUnaryNotBlockedByStalledStream: a server stream whose
// client does not read fills its window and stops, and stops nothing
// else: many unary calls on the same connection at the same time all
// complete quickly.
func TestFastPathUnaryNotBlockedByStalledStream(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			env := fpServe(t, testutil.Endpoint(t), newFPService())
			conn := fpConnect(t, env.endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)
			sctx, _ := fpCall(t, "flood")
			sctx, cancel := context.WithCancel(sctx)
			defer cancel()
			stream, err := client.StreamingOutputCall(sctx, &testgrpc.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			last := fpWaitStalled(t, env.svc)
			t.Logf("the stream stalled after %d messages of 64 KiB (%d KiB)", last, last*64)

			const goroutines, each = 64, 10
			var wg sync.WaitGroup
			var failed atomic.Int64
			var firstErr atomic.Value
			began := time.Now()
			for range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100})
						cancel()
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(began)
			if n := failed.Load(); n > 0 {
				t.Errorf("%d of %d unary calls failed beside the stalled stream; the first: %v", n, goroutines*each, firstErr.Load())
			}
			if took > 5*time.Second {
				t.Errorf("%d unary calls beside a stalled stream took %v; want under 5 s", goroutines*each, took)
			}
			t.Logf("%d unary calls from %d goroutines beside the stalled stream: %v", goroutines*each, goroutines, took.Round(time.Millisecond))

			// The stalled stream still works: read a message, then cancel;
			// the handler's Send ends.
			if m, err := stream.Recv(); err != nil || len(m.GetPayload().GetBody()) != 64<<10 {
				t.Errorf("reading the stalled stream: %v", err)
			}
			cancel()
			select {
			case err := <-env.svc.floodDone:
				t.Logf("the flooding handler's Send ended with %v", err)
			case <-time.After(5 * time.Second):
				t.Error("the flooding handler was still sending 5 s after its client cancelled")
			}
			if got := conn.Protocol(); got != p.want {
				t.Errorf("the client speaks %q after, want %q", got, p.want)
			}
		})
	}
}

// fpWaitStalled waits for a "flood" handler to stop sending (its window
// is full, or it sent all it was asked to) and returns how many messages
// it sent.
func fpWaitStalled(t *testing.T, svc *fpService) int64 {
	t.Helper()
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(10 * time.Second); ; {
		n := svc.floodSent.Load()
		if n != last {
			last, since = n, time.Now()
		} else if n > 0 && time.Since(since) > 300*time.Millisecond {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never stopped sending to a client that does not read: %d messages", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFastPathStalledStreamIsBounded: a client that does not read a
// server stream holds at most the stream's window (4 MiB on both
// protocols, docs/protocol.md) and a message: the server's Send blocks
// there. With 1 MiB messages the server may send five or so before it
// stalls, not the 48 it would send to a client that read them.
func TestFastPathStalledStreamIsBounded(t *testing.T) {
	const msgSize, maxMsgs, window = 1 << 20, 48, 4 << 20
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			env := fpServe(t, testutil.Endpoint(t), newFPService())
			conn := fpConnect(t, env.endpoint, p)
			ctx, _ := fpCall(t, "flood")
			ctx = metadata.AppendToOutgoingContext(ctx, "x-flood-size", fmt.Sprint(msgSize), "x-flood-max", fmt.Sprint(maxMsgs))
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := testgrpc.NewTestServiceClient(conn).StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			n := fpWaitStalled(t, env.svc)
			t.Logf("the server sent %d messages of 1 MiB to a client that reads none before it stalled", n)
			// The window, one message in parts, and one grpc-go queues
			// beyond the window in its transport: 6 MiB.
			if n*msgSize > window+2*msgSize {
				t.Errorf("the server sent %d MiB on a stream whose client reads nothing, with a %d MiB window: the client buffers all of it", n, window>>20)
			}
			if m, err := stream.Recv(); err != nil || len(m.GetPayload().GetBody()) != msgSize {
				t.Errorf("reading the stalled stream: %v", err)
			}
			cancel()
			select {
			case <-env.svc.floodDone:
			case <-time.After(5 * time.Second):
				t.Error("the flooding handler did not end within 5 s of its client's cancel")
			}
		})
	}
}

// TestFastPathServerRestart: a server stopped at once fails its call in
// flight with Unavailable; a new server on the same endpoint then serves
// the same ClientConn's next calls, with no other call failing.
func TestFastPathServerRestart(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			endpoint := testutil.Endpoint(t)
			svc := newFPService()
			first := fpServe(t, endpoint, svc)
			conn := fpConnect(t, endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)

			inFlight := make(chan error, 1)
			go func() {
				ctx, _ := fpCall(t, "slow")
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				inFlight <- err
			}()
			select {
			case <-svc.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the slow call did not start")
			}
			first.stop()
			select {
			case err := <-inFlight:
				wantCode(t, "the call in flight when the server stopped", err, codes.Unavailable)
			case <-time.After(5 * time.Second):
				t.Fatal("the call in flight did not end within 5 s of Stop")
			}

			fpServe(t, endpoint, svc)
			for i := range 3 {
				ctx, _ := fpCall(t, "")
				if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
					t.Fatalf("call %d on the same ClientConn after the restart: %v", i+1, err)
				}
			}
			ctx, _ := fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 3}}})
			if err == nil {
				_, err = recvAll(stream)
			}
			if err != nil {
				t.Errorf("a stream after the restart: %v", err)
			}
			if got := conn.Protocol(); got != p.want {
				t.Errorf("the client speaks %q after the restart, want %q", got, p.want)
			}
		})
	}
}

// TestFastPathGracefulStop: GracefulStop lets the call in flight finish
// with OK and returns only after it; calls started meanwhile get
// Unavailable; once a new server listens, calls on the same ClientConn
// are served by it.
func TestFastPathGracefulStop(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			endpoint := testutil.Endpoint(t)
			svc := newFPService()
			first := fpServe(t, endpoint, svc)
			conn := fpConnect(t, endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)

			inFlight := make(chan error, 1)
			go func() {
				ctx, _ := fpCall(t, "slow")
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 5})
				inFlight <- err
			}()
			select {
			case <-svc.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the slow call did not start")
			}
			// Callers keep calling while GracefulStop begins: each call is
			// served (it got in before the server began to stop) or gets
			// Unavailable (never run), and soon Unavailable. Several at
			// once, so that some call races the server's GOAWAY.
			const callers = 16
			var (
				wg      sync.WaitGroup
				served  atomic.Int64
				badMu   sync.Mutex
				bad     []string
				calling = make(chan struct{}, callers)
			)
			report := func(format string, args ...any) {
				badMu.Lock()
				defer badMu.Unlock()
				bad = append(bad, fmt.Sprintf(format, args...))
			}
			began := time.Now()
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						if i == 1 {
							calling <- struct{}{}
						}
						ctx, id := fpCall(t, "")
						ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
						_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
						cancel()
						// On Windows a named pipe whose server is going away
						// can stay busy, and the dialer waits for it (go-winio
						// retries ERROR_PIPE_BUSY until the deadline), on both
						// protocols: there a call that never ran may end with
						// DeadlineExceeded instead.
						notRun := status.Code(err) == codes.Unavailable ||
							runtime.GOOS == "windows" && status.Code(err) == codes.DeadlineExceeded
						switch {
						case notRun:
							if svc.seenBy(id) != nil {
								report("a call that failed with Unavailable (%v) ran on the server", err)
							}
							if i == 0 {
								calling <- struct{}{}
							}
							return
						case err != nil:
							report("a call during GracefulStop: %v; want OK or Unavailable", err)
							if i == 0 {
								calling <- struct{}{}
							}
							return
						}
						served.Add(1)
						if time.Since(began) > 5*time.Second {
							report("calls were still served 5 s into GracefulStop")
							return
						}
					}
				}()
			}
			for range callers {
				<-calling // every caller has made a call
			}
			stopped := make(chan struct{})
			go func() { first.srv.GracefulStop(); close(stopped) }()
			wg.Wait()
			for _, b := range bad {
				t.Error(b)
			}
			t.Logf("%d calls served in all, %v after GracefulStop began", served.Load(), time.Since(began).Round(time.Millisecond))
			select {
			case <-stopped:
				t.Fatal("GracefulStop returned while a call was in flight")
			case <-time.After(50 * time.Millisecond):
			}
			close(svc.release)
			select {
			case err := <-inFlight:
				if err != nil {
					t.Errorf("the call in flight during GracefulStop: %v; want OK", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the call in flight did not end within 5 s of its release")
			}
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("GracefulStop did not return within 5 s of the last call's end")
			}
			<-first.done

			// Restarted: a call gets Unavailable (the client may still be
			// backing off) or is served; with WaitForReady, served.
			fpServe(t, endpoint, newFPService())
			ctx, _ := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			if c := status.Code(err); c != codes.OK && c != codes.Unavailable {
				t.Errorf("the first call after the restart: %v; want OK or Unavailable", err)
			}
			t.Logf("the first call after the restart: %v", status.Code(err))
			ctx, _ = fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
				t.Errorf("a WaitForReady call after the restart: %v", err)
			}
			if got := conn.Protocol(); got != p.want {
				t.Errorf("the client speaks %q after the restart, want %q", got, p.want)
			}
		})
	}
}
