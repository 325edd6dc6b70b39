package client

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"github.com/jhump/protoreflect/v2/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/local"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

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
			ep, _ := e2e.StartServer(t, tt.endpoint)
			conn := e2e.NewClient(t, ep.String())
			ctx := e2e.Context(t)

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

// TestDialWithOwnClientConn builds the ClientConn as the Dial doc shows.
func TestDialWithOwnClientConn(t *testing.T) {
	ep, _ := e2e.StartServer(t, testutil.Endpoint(t))
	conn, err := grpc.NewClient("passthrough:///"+ep.String(),
		grpc.WithContextDialer(grpcipc.Dial),
		grpc.WithTransportCredentials(local.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := greetpb.NewGreeterClient(conn).SayHello(e2e.Context(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := grpcipc.Dial(e2e.Context(t), "bogus"); !errors.Is(err, grpcipc.ErrInvalidEndpoint) {
		t.Errorf("Dial(bogus) = %v, want ErrInvalidEndpoint", err)
	}
}

func TestNewClientOptions(t *testing.T) {
	if _, err := grpcipc.NewClient("nope://x"); !errors.Is(err, grpcipc.ErrInvalidEndpoint) {
		t.Errorf("NewClient(nope://x) = %v, want ErrInvalidEndpoint", err)
	}
	ep, _ := e2e.StartServer(t, testutil.Endpoint(t))
	// A user's grpc option is applied: this interceptor sees every call,
	// whichever protocol the client speaks.
	for name, opts := range map[string][]grpcipc.ClientOption{
		"default":   nil,
		"WithHTTP2": {grpcipc.WithHTTP2()},
	} {
		t.Run(name, func(t *testing.T) {
			var seen []string
			conn := e2e.NewClient(t, ep.String(), append(opts, grpcipc.WithGRPCDialOptions(grpc.WithUnaryInterceptor(
				func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
					seen = append(seen, method)
					return invoker(ctx, method, req, reply, cc, opts...)
				})))...)
			if _, err := greetpb.NewGreeterClient(conn).SayHello(e2e.Context(t), &greetpb.HelloRequest{}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seen, []string{"/greet.Greeter/SayHello"}) {
				t.Errorf("interceptor saw %v (the client speaks %s)", seen, conn.Protocol())
			}
		})
	}
}
