package grpcipc_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/jhump/protoreflect/v2/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/local"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// startServer serves the demo services on endpoint until the test ends and
// returns the endpoint the listener got (a tcp port 0 becomes the real one).
func startServer(t *testing.T, endpoint string) (grpcipc.Endpoint, *demo.Server) {
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

func newClient(t *testing.T, endpoint string, opts ...grpcipc.ClientOption) *grpcipc.ClientConn {
	t.Helper()
	conn, err := grpcipc.NewClient(endpoint, opts...)
	if err != nil {
		t.Fatalf("NewClient(%s): %v", endpoint, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTransports(t *testing.T) {
	tests := []struct {
		name, endpoint, security string
	}{
		{"this OS's local endpoint", testutil.Endpoint(t), "PrivacyAndIntegrity"},
		{"unix path", "unix://" + slashRooted(filepath.Join(testutil.ShortTempDir(t), "s.sock")), "PrivacyAndIntegrity"},
		{"unix relative path", "unix:" + relSocket(t), "PrivacyAndIntegrity"},
		{"abstract", "unix-abstract:" + testutil.AbstractName(t), "PrivacyAndIntegrity"},
		{"abstract @", "unix:@" + testutil.AbstractName(t) + "-at", "PrivacyAndIntegrity"},
		{"tcp loopback", "tcp://127.0.0.1:0", "NoSecurity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := grpcipc.ParseEndpoint(tt.endpoint); errors.Is(err, errors.ErrUnsupported) {
				t.Skipf("not on this OS: %v", err)
			}
			if ep, _ := grpcipc.ParseEndpoint(tt.endpoint); ep.Transport == grpcipc.Unix {
				probe, err := net.Listen("unix", filepath.Join(testutil.ShortTempDir(t), "p.sock"))
				if err != nil {
					t.Skipf("this OS has no AF_UNIX sockets (Wine 8 has none): %v", err)
				}
				probe.Close()
			}
			if l, err := grpcipc.Listen(context.Background(), tt.endpoint); errors.Is(err, errors.ErrUnsupported) {
				t.Skipf("not served on this OS: %v", err)
			} else if err == nil {
				l.Close()
			}
			ep, _ := startServer(t, tt.endpoint)
			conn := newClient(t, ep.String())
			ctx := ctxFor(t)

			reply, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "gopher"})
			if err != nil {
				t.Fatalf("SayHello: %v", err)
			}
			if reply.GetMessage() != "Hello gopher" {
				t.Errorf("SayHello = %q, want %q", reply.GetMessage(), "Hello gopher")
			}

			who, err := identitypb.NewIdentityClient(conn).WhoAmI(ctx, &identitypb.WhoAmIRequest{})
			if err != nil {
				t.Fatalf("WhoAmI: %v", err)
			}
			if who.GetTransport() != string(ep.Transport) || who.GetEndpoint() != ep.String() || who.GetSecurityLevel() != tt.security {
				t.Errorf("WhoAmI = %v; want transport %s, endpoint %s, security %s", who, ep.Transport, ep, tt.security)
			}

			health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health Check = %v, %v; want SERVING", health, err)
			}

			// Local endpoints speak grpcipc's fast path to grpcipc's server;
			// tcp speaks HTTP/2.
			wantProtocol := grpcipc.ProtocolFast
			if ep.Transport == grpcipc.TCP {
				wantProtocol = grpcipc.ProtocolHTTP2
			}
			if got := conn.Protocol(); got != wantProtocol {
				t.Errorf("Protocol() = %q, want %q", got, wantProtocol)
			}

			refl := grpcreflect.NewClientAuto(ctx, conn)
			defer refl.Reset()
			services, err := refl.ListServices()
			if err != nil {
				t.Fatalf("reflection: %v", err)
			}
			for _, want := range []protoreflect.FullName{"greet.Greeter", "grpc.health.v1.Health", "grpcipc.v1.Identity"} {
				if !slices.Contains(services, want) {
					t.Errorf("reflection lists %v, without %s", services, want)
				}
			}
		})
	}
}

// slashRooted writes an absolute path with slashes and a leading one, for
// unix:// (C:\x becomes /C:/x).
func slashRooted(p string) string {
	p = filepath.ToSlash(p)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// relSocket returns a relative socket path, from the working directory,
// into a new temporary directory.
func relSocket(t *testing.T) string {
	dir := testutil.ShortTempDir(t)
	wd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, filepath.Join(dir, "r.sock"))
	if err != nil {
		return "unrelatable" // another drive (Windows): the test skips
	}
	if len(rel) > 100 {
		t.Skipf("relative path %s is too long for a socket", rel)
	}
	return rel
}

func waitForState(ctx context.Context, t *testing.T, conn *grpc.ClientConn, want ...connectivity.State) connectivity.State {
	t.Helper()
	for {
		s := conn.GetState()
		if slices.Contains(want, s) {
			return s
		}
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatalf("state stayed %v; want one of %v", s, want)
		}
	}
}

// TestConnectivityState shows what the .NET docs say GrpcChannel loses over
// IPC: the channel's state follows the server going away and coming back.
// Connectivity state is grpc.ClientConn's: the client speaks HTTP/2
// (WithHTTP2), here to grpcipc's server on its shared listener.
func TestConnectivityState(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := demo.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)

	cc := newClient(t, endpoint, grpcipc.WithHTTP2())
	if p := cc.Protocol(); p != grpcipc.ProtocolHTTP2 {
		t.Errorf("WithHTTP2: Protocol() = %q, want %q", p, grpcipc.ProtocolHTTP2)
	}
	conn := cc.GRPCClientConn()
	if conn == nil {
		t.Fatal("WithHTTP2: GRPCClientConn() = nil")
	}
	ctx := ctxFor(t)
	if s := conn.GetState(); s != connectivity.Idle {
		t.Errorf("a new client's state is %v, want IDLE (NewClient does no I/O)", s)
	}
	conn.Connect()
	waitForState(ctx, t, conn, connectivity.Ready)

	srv.Stop()
	s := waitForState(ctx, t, conn, connectivity.Idle, connectivity.TransientFailure, connectivity.Connecting)
	t.Logf("after the server stopped: %v", s)
	if _, err := greetpb.NewGreeterClient(cc).SayHello(ctx, &greetpb.HelloRequest{}); err == nil {
		t.Error("a call with no server succeeded")
	}

	_, _ = startServer(t, endpoint)
	conn.Connect()
	waitForState(ctx, t, conn, connectivity.Ready)
	if _, err := greetpb.NewGreeterClient(cc).SayHello(ctx, &greetpb.HelloRequest{}); err != nil {
		t.Errorf("call after the server came back: %v", err)
	}
}

// TestDialWithOwnClientConn builds the ClientConn as the Dial doc shows.
func TestDialWithOwnClientConn(t *testing.T) {
	ep, _ := startServer(t, testutil.Endpoint(t))
	conn, err := grpc.NewClient("passthrough:///"+ep.String(),
		grpc.WithContextDialer(grpcipc.Dial),
		grpc.WithTransportCredentials(local.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := greetpb.NewGreeterClient(conn).SayHello(ctxFor(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := grpcipc.Dial(ctxFor(t), "bogus"); !errors.Is(err, grpcipc.ErrInvalidEndpoint) {
		t.Errorf("Dial(bogus) = %v, want ErrInvalidEndpoint", err)
	}
}

func TestNewClientOptions(t *testing.T) {
	if _, err := grpcipc.NewClient("nope://x"); !errors.Is(err, grpcipc.ErrInvalidEndpoint) {
		t.Errorf("NewClient(nope://x) = %v, want ErrInvalidEndpoint", err)
	}
	ep, _ := startServer(t, testutil.Endpoint(t))
	// A user's grpc option is applied: this interceptor sees every call,
	// whichever protocol the client speaks.
	for name, opts := range map[string][]grpcipc.ClientOption{
		"default":   nil,
		"WithHTTP2": {grpcipc.WithHTTP2()},
	} {
		t.Run(name, func(t *testing.T) {
			var seen []string
			conn := newClient(t, ep.String(), append(opts, grpcipc.WithGRPCDialOptions(grpc.WithUnaryInterceptor(
				func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
					seen = append(seen, method)
					return invoker(ctx, method, req, reply, cc, opts...)
				})))...)
			if _, err := greetpb.NewGreeterClient(conn).SayHello(ctxFor(t), &greetpb.HelloRequest{}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seen, []string{"/greet.Greeter/SayHello"}) {
				t.Errorf("interceptor saw %v (the client speaks %s)", seen, conn.Protocol())
			}
		})
	}
}

func TestAbstractInUse(t *testing.T) {
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	if _, err := grpcipc.ParseEndpoint(endpoint); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this OS has no abstract sockets: %v", err)
	}
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l2, err := grpcipc.Listen(context.Background(), endpoint)
	if err == nil {
		l2.Close()
		t.Fatal("a second Listen on a bound abstract name succeeded")
	}
	if !errors.Is(err, grpcipc.ErrAddressInUse) || !strings.Contains(err.Error(), endpoint) {
		t.Errorf("error = %v; want ErrAddressInUse naming %s", err, endpoint)
	}
	// Raw round trip on the abstract socket.
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := grpcipc.Dial(ctxFor(t), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Errorf("read %q, %v", buf, err)
	}
	if _, ok := c.(*net.UnixConn); !ok {
		t.Errorf("Dial returned a %T, want *net.UnixConn", c)
	}
}

// flakyGreeter fails its first calls with Unavailable.
type flakyGreeter struct {
	greetpb.UnimplementedGreeterServer
	failures atomic.Int32
}

func (g *flakyGreeter) SayHello(_ context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	if g.failures.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "try again")
	}
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

// TestRetriesAndKeepalive: grpc-go's retry policy and client keepalive work
// over a local endpoint as over TCP, for a client that speaks HTTP/2
// (WithHTTP2: both are grpc.ClientConn's), against grpcipc's server given
// grpc-go's keepalive enforcement (WithGRPCServerOptions) and against a
// plain grpc.Server made with ServerOptions.
func TestRetriesAndKeepalive(t *testing.T) {
	enforce := grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: 50 * time.Millisecond, PermitWithoutStream: true})
	for _, tc := range []struct {
		name  string
		serve func(t *testing.T, l net.Listener, g greetpb.GreeterServer)
	}{
		{"NewServer", func(t *testing.T, l net.Listener, g greetpb.GreeterServer) {
			srv, err := grpcipc.NewServer(grpcipc.WithGRPCServerOptions(enforce))
			if err != nil {
				t.Fatal(err)
			}
			greetpb.RegisterGreeterServer(srv, g)
			go srv.Serve(l)
			t.Cleanup(srv.Stop)
		}},
		{"ServerOptions", func(t *testing.T, l net.Listener, g greetpb.GreeterServer) {
			opts, err := grpcipc.ServerOptions()
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer(append(opts, enforce)...)
			greetpb.RegisterGreeterServer(srv, g)
			go srv.Serve(l)
			t.Cleanup(srv.Stop)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint := testutil.Endpoint(t)
			l, err := grpcipc.Listen(context.Background(), endpoint)
			if err != nil {
				t.Fatal(err)
			}
			g := &flakyGreeter{}
			g.failures.Store(2)
			tc.serve(t, l, g)

			conn := newClient(t, endpoint, grpcipc.WithHTTP2(), grpcipc.WithGRPCDialOptions(
				grpc.WithDefaultServiceConfig(`{"methodConfig": [{"name": [{"service": "greet.Greeter"}],
					"retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.01s", "maxBackoff": "0.1s",
					"backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`),
				grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 100 * time.Millisecond, Timeout: time.Second, PermitWithoutStream: true})))
			reply, err := greetpb.NewGreeterClient(conn).SayHello(ctxFor(t), &greetpb.HelloRequest{Name: "retry"})
			if err != nil {
				t.Fatalf("with two Unavailable answers and a retry policy: %v", err)
			}
			if reply.GetMessage() != "Hello retry" || g.failures.Load() >= 0 {
				t.Errorf("reply %q after %d failures left", reply.GetMessage(), g.failures.Load())
			}
			// Keepalive pings flow on the idle connection without the server
			// closing it for pinging too often.
			time.Sleep(500 * time.Millisecond)
			if s := conn.GRPCClientConn().GetState(); s != connectivity.Ready {
				t.Errorf("after idle keepalive pings the connection is %v, want READY", s)
			}
		})
	}
}
