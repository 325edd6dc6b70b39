package tls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

func newKeyPair(t testing.TB, name string) *grpcipc.KeyPair {
	t.Helper()
	kp, err := grpcipc.NewKeyPair(name)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// serveTLS serves the counting server, made by grpcipc.NewServer, on a
// fresh socket with TLS options.
func serveTLS(t *testing.T, opts ...grpcipc.ServerOption) *e2e.GuardedServer {
	t.Helper()
	return e2e.ServeGuarded(t, "unix://"+filepath.Join(testutil.ShortTempDir(t), "s.sock"), opts...)
}

func TestMutualTLSOverUnixSocket(t *testing.T) {
	server, client := newKeyPair(t, "server"), newKeyPair(t, "client")
	gs := serveTLS(t, grpcipc.WithTLS(server.TLSConfig()), grpcipc.WithPins(client.Pin))

	conn := e2e.NewClient(t, gs.Endpoint, grpcipc.WithTLS(client.TLSConfig()), grpcipc.WithPins(server.Pin))
	var p peer.Peer
	if _, err := identitypb.NewIdentityClient(conn).WhoAmI(e2e.Context(t), &identitypb.WhoAmIRequest{}, grpc.Peer(&p)); err != nil {
		t.Fatalf("mTLS call: %v", err)
	}
	ai, ok := grpcipc.AuthInfoFromPeer(&p)
	if !ok || ai.TLS == nil || ai.Peer == nil {
		t.Fatalf("client AuthInfo = %+v; want the server's identity and TLS state", ai)
	}
	if uid, _ := ai.Peer.UID(); uid != os.Geteuid() {
		t.Errorf("server uid %d, want %d", uid, os.Geteuid())
	}
	if got := grpcipc.CertPin(ai.TLS.State.PeerCertificates[0].Raw); got != server.Pin {
		t.Errorf("server certificate %s, want %s", got, server.Pin)
	}
	if ai.TLS.State.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x", ai.TLS.State.Version)
	}

	// Without a client certificate, or with another one: refused, and no
	// handler runs.
	calls := gs.Srv.Calls.Load()
	stranger := newKeyPair(t, "stranger")
	for name, opts := range map[string][]grpcipc.ClientOption{
		"no certificate":      {grpcipc.WithPins(server.Pin)},
		"another certificate": {grpcipc.WithTLS(stranger.TLSConfig()), grpcipc.WithPins(server.Pin)},
		"no TLS at all":       nil,
	} {
		if err := e2e.SayHello(t, gs.Endpoint, opts...); err == nil {
			t.Errorf("%s: the call went through", name)
		}
	}
	if gs.Srv.Calls.Load() != calls {
		t.Error("a handler ran for a client the server's TLS refused")
	}
}

// A handler sees the client's certificate next to its OS identity, on
// both servers that check callers.
func TestServerCertificateInHandler(t *testing.T) {
	server, client := newKeyPair(t, "server"), newKeyPair(t, "client")
	for _, k := range e2e.ServerKinds {
		t.Run(k.Name, func(t *testing.T) {
			var seen []byte
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			l, err := grpcipc.Listen(context.Background(), endpoint)
			if err != nil {
				t.Fatal(err)
			}
			s := k.Make(t, grpcipc.WithTLS(server.TLSConfig()), grpcipc.WithPins(client.Pin),
				grpcipc.WithUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					if ai, ok := grpcipc.AuthInfoFromContext(ctx); ok && ai.TLS != nil && ai.Peer != nil {
						seen = ai.TLS.State.PeerCertificates[0].Raw
					}
					return h(ctx, req)
				}))
			greetpb.RegisterGreeterServer(s, e2e.Greeter{})
			go s.Serve(l)
			defer s.Stop()
			if err := e2e.SayHello(t, endpoint, grpcipc.WithTLS(client.TLSConfig()), grpcipc.WithPins(server.Pin)); err != nil {
				t.Fatal(err)
			}
			if grpcipc.CertPin(seen) != client.Pin {
				t.Error("the handler did not see the client's certificate next to its OS identity")
			}
		})
	}
}

func TestPins(t *testing.T) {
	server := newKeyPair(t, "server")
	gs := serveTLS(t, grpcipc.WithTLS(server.TLSConfig()))
	spki := grpcipc.SPKIPin(server.Certificate.Leaf).String()
	colons := strings.ToUpper(strings.Join(splitEvery(server.Pin.String(), 2), ":"))
	for _, pin := range []string{server.Pin.String(), spki, colons, "sha256:" + server.Pin.String()} {
		p, err := grpcipc.ParsePin(pin)
		if err != nil {
			t.Fatalf("pin %s: %v", pin, err)
		}
		if err := e2e.SayHello(t, gs.Endpoint, grpcipc.WithPins(p)); err != nil {
			t.Errorf("pin %s: %v", pin, err)
		}
	}
	wrongPin := newKeyPair(t, "other").Pin
	wrong := wrongPin.String()
	err := e2e.SayHello(t, gs.Endpoint, grpcipc.WithPins(wrongPin))
	if err == nil {
		t.Fatal("a wrong pin was accepted")
	}
	for _, want := range []string{"matches no pinned SHA-256 thumbprint", server.Pin.String(), "want " + wrong} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("pin mismatch error %q does not say %q", err, want)
		}
	}
	// A CA instead of a pin: the self-signed certificate as its own CA.
	pool := x509.NewCertPool()
	pool.AddCert(server.Certificate.Leaf)
	if err := e2e.SayHello(t, gs.Endpoint, grpcipc.WithTLS(&tls.Config{RootCAs: pool})); err != nil {
		t.Errorf("CA verification: %v", err)
	}
	if err := e2e.SayHello(t, gs.Endpoint, grpcipc.WithTLS(&tls.Config{RootCAs: x509.NewCertPool()})); err == nil {
		t.Error("a server certificate outside the CA pool was accepted")
	}
}

func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}
