package admission

import (
	"context"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serveTCP serves the counting server, made by grpcipc.NewServer with
// opts, on a loopback port and returns its endpoint.
func serveTCP(t *testing.T, opts ...grpcipc.ServerOption) (string, *e2e.GuardedServer) {
	t.Helper()
	return serveTCPKind(t, e2e.NewServerKind, opts...)
}

// serveTCPKind is serveTCP with a server of kind k; a nil k.make serves
// with a plain grpc.Server, made without ServerOptions.
func serveTCPKind(t *testing.T, k e2e.ServerKind, opts ...grpcipc.ServerOption) (string, *e2e.GuardedServer) {
	t.Helper()
	l, err := grpcipc.Listen(context.Background(), "tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "tcp://" + l.Addr().String()
	if k.Make == nil {
		gs := &e2e.GuardedServer{Endpoint: endpoint, Srv: &e2e.CountingServer{}, Log: &e2e.SyncBuffer{}}
		s := grpc.NewServer()
		greetpb.RegisterGreeterServer(s, gs.Srv)
		identitypb.RegisterIdentityServer(s, gs.Srv)
		done := make(chan struct{})
		go func() { defer close(done); s.Serve(l) }()
		t.Cleanup(func() { s.Stop(); <-done })
		return endpoint, gs
	}
	gs := e2e.ServeGuardedOn(t, k, l, endpoint, opts...)
	return endpoint, gs
}

// Over tcp there is no OS identity: without client certificates, or the
// explicit WithUnauthenticatedTCP, another local user must not get in.
func TestTCPNeedsClientAuthentication(t *testing.T) {
	testutil.RequireRoot(t)
	for _, k := range e2e.ServerKinds {
		t.Run("no client authentication: refused by "+k.Name, func(t *testing.T) {
			endpoint, gs := serveTCPKind(t, k)
			res := e2e.Call(t, e2e.Nobody, endpoint, "SayHello")
			if res.Code == "OK" {
				t.Fatalf("uid 65534 called a tcp server that does not authenticate clients")
			}
			if gs.Srv.Calls.Load() != 0 {
				t.Error("a handler ran")
			}
			if log := gs.Log.String(); !strings.Contains(log, "tcp carries no OS identity") {
				t.Errorf("the server log does not say why:\n%s", log)
			}
		})
	}
	t.Run("a plain grpc.Server: refused too", func(t *testing.T) {
		endpoint, gs := serveTCPKind(t, e2e.ServerKind{Name: "plain"})
		if res := e2e.Call(t, e2e.Nobody, endpoint, "SayHello"); res.Code == "OK" {
			t.Fatal("uid 65534 called a tcp server made without ServerOptions")
		}
		if gs.Srv.Calls.Load() != 0 {
			t.Error("a handler ran")
		}
	})
	t.Run("WithUnauthenticatedTCP: served, and said so", func(t *testing.T) {
		endpoint, gs := serveTCP(t, grpcipc.WithUnauthenticatedTCP())
		if res := e2e.Call(t, e2e.Nobody, endpoint, "SayHello"); res.Code != "OK" {
			t.Fatalf("opted in, uid 65534 got %s %s", res.Code, res.Message)
		}
		if log := gs.Log.String(); !strings.Contains(log, "without client authentication") {
			t.Errorf("no warning logged for WithUnauthenticatedTCP:\n%s", log)
		}
	})
	t.Run("client certificates: only the pinned client", func(t *testing.T) {
		server, err := grpcipc.NewKeyPair("server")
		if err != nil {
			t.Fatal(err)
		}
		client, err := grpcipc.NewKeyPair("client")
		if err != nil {
			t.Fatal(err)
		}
		stranger, err := grpcipc.NewKeyPair("stranger")
		if err != nil {
			t.Fatal(err)
		}
		endpoint, gs := serveTCP(t, grpcipc.WithTLS(server.TLSConfig()), grpcipc.WithPins(client.Pin))
		for _, tc := range []struct {
			kp   *grpcipc.KeyPair
			want codes.Code
		}{{client, codes.OK}, {stranger, codes.Unavailable}} {
			conn := e2e.NewClient(t, endpoint, grpcipc.WithTLS(tc.kp.TLSConfig()), grpcipc.WithPins(server.Pin))
			_, err := greetpb.NewGreeterClient(conn).SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "x"})
			if status.Code(err) != tc.want {
				t.Errorf("client %s: %v, want %s", tc.kp.Certificate.Leaf.Subject.CommonName, err, tc.want)
			}
		}
		if gs.Srv.Calls.Load() != 1 {
			t.Errorf("%d handler calls, want 1", gs.Srv.Calls.Load())
		}
	})
	// WithUnauthenticatedTCP is about tcp listeners only: a local listener
	// of the same server still checks who connects.
	t.Run("WithUnauthenticatedTCP, local listener: checked", func(t *testing.T) {
		gs := e2e.ServeGuarded(t, "unix-abstract:"+testutil.AbstractName(t), grpcipc.WithUnauthenticatedTCP())
		if res := e2e.Call(t, e2e.Nobody, gs.Endpoint, "SayHello"); res.Code != "PermissionDenied" {
			t.Fatalf("uid 65534 on a local listener of a server given WithUnauthenticatedTCP: %s %s; want PermissionDenied", res.Code, res.Message)
		}
		if gs.Srv.Calls.Load() != 0 {
			t.Error("a handler ran")
		}
	})
}
