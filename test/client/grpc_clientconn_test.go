package client

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

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

	cc := e2e.NewClient(t, endpoint, grpcipc.WithHTTP2())
	if p := cc.Protocol(); p != grpcipc.ProtocolHTTP2 {
		t.Errorf("WithHTTP2: Protocol() = %q, want %q", p, grpcipc.ProtocolHTTP2)
	}
	conn := cc.GRPCClientConn()
	if conn == nil {
		t.Fatal("WithHTTP2: GRPCClientConn() = nil")
	}
	ctx := e2e.Context(t)
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

	_, _ = e2e.StartServer(t, endpoint)
	conn.Connect()
	waitForState(ctx, t, conn, connectivity.Ready)
	if _, err := greetpb.NewGreeterClient(cc).SayHello(ctx, &greetpb.HelloRequest{}); err != nil {
		t.Errorf("call after the server came back: %v", err)
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

			conn := e2e.NewClient(t, endpoint, grpcipc.WithHTTP2(), grpcipc.WithGRPCDialOptions(
				grpc.WithDefaultServiceConfig(`{"methodConfig": [{"name": [{"service": "greet.Greeter"}],
					"retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.01s", "maxBackoff": "0.1s",
					"backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`),
				grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 100 * time.Millisecond, Timeout: time.Second, PermitWithoutStream: true})))
			reply, err := greetpb.NewGreeterClient(conn).SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "retry"})
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
