package bench

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkConnection is the cost of one connection: dial, accept, close,
// on a plain net.Listen socket and on a grpcipc.Listen one (the server, not
// the listener, reads the caller's identity and applies the policy: see
// BenchmarkNewConnection for the whole of it).
func BenchmarkConnection(b *testing.B) {
	for _, tc := range []struct {
		name   string
		listen func(path string) (net.Listener, error)
	}{
		{"plain", func(path string) (net.Listener, error) { return net.Listen("unix", path) }},
		{"grpcipc", func(path string) (net.Listener, error) {
			return grpcipc.Listen(context.Background(), "unix://"+path)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			path := filepath.Join(testutil.ShortTempDir(b), "b.sock")
			l, err := tc.listen(path)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.Dial("unix", path)
				if err != nil {
					b.Fatal(err)
				}
				s, err := l.Accept()
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
				c.Close()
			}
		})
	}
}

type benchGreeter struct {
	greetpb.UnimplementedGreeterServer
}

func (benchGreeter) SayHello(_ context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

// BenchmarkUnaryCall is one SayHello call on an open connection over a Unix
// socket: plain grpc-go, and grpcipc's client and server (which speak the
// fast path) with the default policy and with a per-method policy. The
// identity is read once per connection, so the difference between the two
// grpcipc cases is the policy's lookup alone.
func BenchmarkUnaryCall(b *testing.B) {
	perMethod, err := grpcipc.ParsePolicy([]byte(`{"name": "b", "allow_rules": [
		{"name": "hello", "source": {"principals": ["same-user"]}, "request": {"paths": ["/greet.Greeter/SayHello"]}},
		{"name": "other", "source": {"principals": ["uid:0", "group:root"]}, "request": {"paths": ["/x.Y/*"]}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		grpcipc bool
		policy  *grpcipc.Policy
	}{
		{"plain-grpc", false, nil},
		{"grpcipc-same-user", true, nil},
		{"grpcipc-per-method", true, perMethod},
	} {
		b.Run(tc.name, func(b *testing.B) {
			path := filepath.Join(testutil.ShortTempDir(b), "b.sock")
			var (
				l    net.Listener
				srv  e2e.TestServer
				conn interface {
					grpc.ClientConnInterface
					Close() error
				}
				err error
			)
			if tc.grpcipc {
				var lopts []grpcipc.ListenOption
				var sopts []grpcipc.ServerOption
				if tc.policy != nil {
					lopts = append(lopts, grpcipc.WithPolicy(tc.policy))
					sopts = append(sopts, grpcipc.WithPolicy(tc.policy))
				}
				l, err = grpcipc.Listen(context.Background(), "unix://"+path, lopts...)
				srv = e2e.NewServerKind.Make(b, sopts...)
			} else {
				l, err = net.Listen("unix", path)
				srv = grpc.NewServer()
			}
			if err != nil {
				b.Fatal(err)
			}
			greetpb.RegisterGreeterServer(srv, benchGreeter{})
			go srv.Serve(l)
			defer srv.Stop()
			if tc.grpcipc {
				conn, err = grpcipc.NewClient("unix://" + path)
			} else {
				conn, err = grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
			}
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			client := greetpb.NewGreeterClient(conn)
			req := &greetpb.HelloRequest{Name: "bench"}
			if _, err := client.SayHello(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			// The call's context: none that ends; one that can be
			// cancelled, shared by the calls (a request's, a program's);
			// a timeout made for each call.
			shared, cancel := context.WithCancel(context.Background())
			defer cancel()
			for _, cx := range []struct {
				name string
				ctx  func() (context.Context, context.CancelFunc)
			}{
				{"background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
				{"shared-cancel", func() (context.Context, context.CancelFunc) { return shared, func() {} }},
				{"timeout-per-call", func() (context.Context, context.CancelFunc) { return context.WithTimeout(shared, time.Minute) }},
			} {
				b.Run("ctx="+cx.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						ctx, cancel := cx.ctx()
						_, err := client.SayHello(ctx, req)
						cancel()
						if err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkNewConnection is a new connection and its first call over a Unix
// socket: grpcipc's identity check alone, with the caller's cgroup read
// too (a policy that names a unit), with TLS (the client pins the
// server), and with mutual TLS; the differences are the cgroup's and the
// TLS handshake's costs.
func BenchmarkNewConnection(b *testing.B) {
	server, err := grpcipc.NewKeyPair("server")
	if err != nil {
		b.Fatal(err)
	}
	client, err := grpcipc.NewKeyPair("client")
	if err != nil {
		b.Fatal(err)
	}
	// A policy that names a unit: every caller's cgroup is read at accept.
	unitPolicy, err := grpcipc.ParsePolicy([]byte(`{"name": "u", "allow_rules": [
		{"name": "self", "source": {"principals": ["same-user"]}},
		{"name": "unit", "source": {"principals": ["unit:backup.service"]}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		server []grpcipc.ServerOption
		client []grpcipc.ClientOption
	}{
		{"identity-only", nil, nil},
		{"identity-and-cgroup", []grpcipc.ServerOption{grpcipc.WithPolicy(unitPolicy)}, nil},
		{"tls", []grpcipc.ServerOption{grpcipc.WithTLS(server.TLSConfig())},
			[]grpcipc.ClientOption{grpcipc.WithPins(server.Pin)}},
		{"mtls", []grpcipc.ServerOption{grpcipc.WithTLS(server.TLSConfig()), grpcipc.WithPins(client.Pin)},
			[]grpcipc.ClientOption{grpcipc.WithTLS(client.TLSConfig()), grpcipc.WithPins(server.Pin)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			endpoint := "unix://" + filepath.Join(testutil.ShortTempDir(b), "b.sock")
			l, err := grpcipc.Listen(context.Background(), endpoint)
			if err != nil {
				b.Fatal(err)
			}
			srv := e2e.NewServerKind.Make(b, tc.server...)
			greetpb.RegisterGreeterServer(srv, benchGreeter{})
			go srv.Serve(l)
			defer srv.Stop()
			req := &greetpb.HelloRequest{Name: "bench"}
			b.ReportAllocs()
			for b.Loop() {
				conn, err := grpcipc.NewClient(endpoint, tc.client...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := greetpb.NewGreeterClient(conn).SayHello(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
		})
	}
}
