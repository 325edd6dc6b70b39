package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// CountingServer counts the calls that reached its handlers.
type CountingServer struct {
	greetpb.UnimplementedGreeterServer
	identitypb.UnimplementedIdentityServer
	Calls atomic.Int64
}

func (s *CountingServer) SayHello(_ context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	s.Calls.Add(1)
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

func (s *CountingServer) WhoAmI(ctx context.Context, _ *identitypb.WhoAmIRequest) (*identitypb.WhoAmIResponse, error) {
	s.Calls.Add(1)
	return identity.WhoAmI(ctx), nil
}

// SyncBuffer is a log destination safe for the server's goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// GuardedServer is a counting server that checks its callers, served on
// Endpoint and logging to Log.
type GuardedServer struct {
	Endpoint string
	Srv      *CountingServer
	Log      *SyncBuffer
}

// TestServer is a server the tests serve on: a grpcipc.Server, or a
// grpc.Server made with grpcipc.ServerOptions.
type TestServer interface {
	grpc.ServiceRegistrar
	Serve(net.Listener) error
	Stop()
}

// ServerKind makes a server that checks callers, with opts.
type ServerKind struct {
	Name string
	Make func(t testing.TB, opts ...grpcipc.ServerOption) TestServer
}

var (
	// NewServerKind is grpcipc.NewServer.
	NewServerKind = ServerKind{"NewServer", func(t testing.TB, opts ...grpcipc.ServerOption) TestServer {
		t.Helper()
		s, err := grpcipc.NewServer(opts...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}
	// ServerOptionsKind is a grpc.Server made with grpcipc.ServerOptions.
	ServerOptionsKind = ServerKind{"ServerOptions", func(t testing.TB, opts ...grpcipc.ServerOption) TestServer {
		t.Helper()
		return grpc.NewServer(ServerOpts(t, opts...)...)
	}}
	// ServerKinds: both servers that check callers, for the suites that
	// must hold for either.
	ServerKinds = []ServerKind{NewServerKind, ServerOptionsKind}
	// SinkServerKind is NewServer with the Sink service.
	SinkServerKind = ServerKind{"NewServer+Sink", func(t testing.TB, opts ...grpcipc.ServerOption) TestServer {
		t.Helper()
		s := NewServerKind.Make(t, opts...)
		RegisterSink(s)
		return s
	}}
)

// ServerOpts is grpcipc.ServerOptions(opts...), failing t on an error.
func ServerOpts(t testing.TB, opts ...grpcipc.ServerOption) []grpc.ServerOption {
	t.Helper()
	so, err := grpcipc.ServerOptions(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return so
}

// ServeGuarded serves the counting server, made by grpcipc.NewServer with
// opts (a policy, say) and logging to a buffer, on a listener that Listen
// makes on endpoint, given the policy among opts too so that the socket
// lets its callers in; for an endpoint that is a path, in a directory every
// user may enter.
func ServeGuarded(t *testing.T, endpoint string, opts ...grpcipc.ServerOption) *GuardedServer {
	t.Helper()
	return ServeGuardedKind(t, NewServerKind, endpoint, nil, opts...)
}

// ServeGuardedKind is ServeGuarded with a server of kind k and more Listen
// options.
func ServeGuardedKind(t *testing.T, k ServerKind, endpoint string, listenOpts []grpcipc.ListenOption, opts ...grpcipc.ServerOption) *GuardedServer {
	t.Helper()
	for _, o := range opts {
		if p, ok := o.(grpcipc.PolicyOption); ok {
			listenOpts = append(listenOpts, p)
		}
	}
	l, err := grpcipc.Listen(context.Background(), endpoint, listenOpts...)
	if err != nil {
		t.Fatalf("Listen(%s): %v", endpoint, err)
	}
	return ServeGuardedOn(t, k, l, endpoint, opts...)
}

// ServeGuardedOn serves the counting server, made as k makes it with opts
// and logging to a buffer, on l.
func ServeGuardedOn(t *testing.T, k ServerKind, l net.Listener, endpoint string, opts ...grpcipc.ServerOption) *GuardedServer {
	t.Helper()
	gs := &GuardedServer{Endpoint: endpoint, Srv: &CountingServer{}, Log: &SyncBuffer{}}
	opts = append(opts, grpcipc.WithLogger(slog.New(slog.NewTextHandler(gs.Log, nil))))
	s := k.Make(t, opts...)
	greetpb.RegisterGreeterServer(s, gs.Srv)
	identitypb.RegisterIdentityServer(s, gs.Srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(l)
	}()
	t.Cleanup(func() { s.Stop(); <-done })
	return gs
}

// SharedSocket is a socket path in a directory every user may enter.
func SharedSocket(t *testing.T) string {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return "unix://" + filepath.Join(dir, "s.sock")
}

// StartServer serves the demo services on endpoint until the test ends and
// returns the endpoint the listener got (a tcp port 0 becomes the real one).
func StartServer(t *testing.T, endpoint string) (grpcipc.Endpoint, *demo.Server) {
	t.Helper()
	ep, err := grpcipc.ParseEndpoint(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpcipc.ServerOption
	if ep.Transport == grpcipc.TCP {
		opts = append(opts, grpcipc.WithUnauthenticatedTCP())
	}
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatalf("Listen(%s): %v", endpoint, err)
	}
	if ep.Transport == grpcipc.TCP {
		ep.Address = l.Addr().String()
	}
	srv, err := demo.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() { srv.Stop(); <-done })
	return ep, srv
}

// SlowGreeter blocks "slow" calls until released or cancelled.
type SlowGreeter struct {
	greetpb.UnimplementedGreeterServer
	Entered   chan struct{}
	Release   chan struct{}
	Cancelled chan struct{}
}

func (g *SlowGreeter) SayHello(ctx context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	if req.GetName() == "slow" {
		g.Entered <- struct{}{}
		select {
		case <-g.Release:
		case <-ctx.Done():
			g.Cancelled <- struct{}{}
			return nil, ctx.Err()
		}
	}
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

// StartSlowServer serves the slow greeter and the Sink service, made by
// grpcipc.NewServer with opts and logging to a buffer.
func StartSlowServer(t *testing.T, opts ...grpcipc.ServerOption) (string, *grpcipc.Server, *SlowGreeter, *SyncBuffer) {
	t.Helper()
	endpoint := testutil.Endpoint(t)
	log := &SyncBuffer{}
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	g := &SlowGreeter{Entered: make(chan struct{}, 1), Release: make(chan struct{}), Cancelled: make(chan struct{}, 1)}
	srv, err := grpcipc.NewServer(append(opts, grpcipc.WithLogger(slog.New(slog.NewTextHandler(log, nil))))...)
	if err != nil {
		t.Fatal(err)
	}
	greetpb.RegisterGreeterServer(srv, g)
	RegisterSink(srv)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return endpoint, srv, g, log
}

// Greeter answers SayHello at once.
type Greeter struct {
	greetpb.UnimplementedGreeterServer
}

func (Greeter) SayHello(_ context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

// SinkMethod is a streaming method whose handler takes no message: it
// holds the call until the client cancels it, as a slow handler would.
const SinkMethod = "/grpcipc.test.Sink/Hold"

// SinkDesc is the Sink service, whose one method is SinkMethod.
var SinkDesc = grpc.ServiceDesc{
	ServiceName: "grpcipc.test.Sink",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Hold", ClientStreams: true, ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			<-ss.Context().Done()
			return status.FromContextError(ss.Context().Err()).Err()
		},
	}},
}

// RegisterSink adds the Sink service to s.
func RegisterSink(s grpc.ServiceRegistrar) { s.RegisterService(&SinkDesc, struct{}{}) }
