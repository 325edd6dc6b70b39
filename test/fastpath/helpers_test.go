package fastpath

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// fpProtocol is one way a grpcipc client talks to a grpcipc.Server.
type fpProtocol struct {
	name string
	want grpcipc.Protocol // ClientConn.Protocol after the first call
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
	conn := e2e.NewClient(t, endpoint, append(slices.Clone(p.opts), opts...)...)
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(e2e.Context(t), &testgrpc.Empty{}); err != nil {
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
	ctx := metadata.AppendToOutgoingContext(e2e.Context(t), "x-call-id", id, "x-mode", mode)
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
	case "hang": // until the call's context ends, telling no one
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(10 * time.Second):
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

func (s *fpStats) HandleConn(context.Context, stats.ConnStats) {}

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
