package grpcipc_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

func init() {
	// impostor ENDPOINT: serves SayHello to anyone on ENDPOINT, prints
	// "ready", then "call METHOD" for every call that reaches it.
	grpcipc.RegisterHelper("impostor", func(args []string) error {
		p, err := grpcipc.AllowPolicy("*")
		if err != nil {
			return err
		}
		l, err := grpcipc.Listen(context.Background(), args[0], grpcipc.WithPolicy(p))
		if err != nil {
			return err
		}
		s, err := grpcipc.NewServer(grpcipc.WithPolicy(p), grpcipc.WithUnaryInterceptor(
			func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				fmt.Println("call", info.FullMethod)
				return h(ctx, req)
			}))
		if err != nil {
			l.Close()
			return err
		}
		greetpb.RegisterGreeterServer(s, benchGreeter{})
		fmt.Println("ready")
		return s.Serve(l)
	})
}

// startImpostor runs a server as uid 65534 and returns the reader of its
// output after "ready".
func startImpostor(t *testing.T, endpoint string) *bufio.Reader {
	t.Helper()
	r := testutil.Start(t, testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "impostor", endpoint))
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("impostor said %q, %v", line, err)
	}
	return r
}

func sayHello(t *testing.T, endpoint string, opts ...grpcipc.ClientOption) error {
	t.Helper()
	conn := newClient(t, endpoint, opts...)
	_, err := greetpb.NewGreeterClient(conn).SayHello(ctxFor(t), &greetpb.HelloRequest{Name: "x"})
	return err
}

func TestClientRefusesImpostor(t *testing.T) {
	testutil.RequireRoot(t)
	sticky := testutil.ShortTempDir(t)
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{
		"unix-abstract:" + testutil.AbstractName(t),
		"unix://" + filepath.Join(sticky, "s.sock"), // a /tmp-like directory the impostor may write to
	} {
		t.Run(strings.SplitN(endpoint, ":", 2)[0], func(t *testing.T) {
			out := startImpostor(t, endpoint)
			// nil: the default, same-user or root.
			for _, expect := range [][]string{nil, {"root"}, {"uid:0", "same-user"}} {
				var opts []grpcipc.ClientOption
				wantExpected := "expected same-user or root (the default"
				if expect != nil {
					opts = append(opts, grpcipc.WithExpectedServer(expect...))
					wantExpected = "expected " + strings.Join(expect, " or ")
				}
				err := sayHello(t, endpoint, opts...)
				if err == nil {
					t.Fatalf("a client expecting %v called a server running as uid 65534", expect)
				}
				msg := err.Error()
				for _, want := range []string{"untrusted server", wantExpected} {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q does not say %q", msg, want)
					}
				}
				if !strings.Contains(msg, "uid 65534 (nobody)") && !strings.Contains(msg, "owned by uid 65534") {
					t.Errorf("error %q does not name the impostor", msg)
				}
			}
			// The same client expecting that user gets through: the check,
			// not the connection, refused it.
			if err := sayHello(t, endpoint, grpcipc.WithExpectedServer("user:nobody")); err != nil {
				t.Fatalf("expecting nobody: %v", err)
			}
			line, _ := out.ReadString('\n')
			if line != "call /greet.Greeter/SayHello\n" {
				t.Errorf("the impostor's first call was %q; the refused clients must have sent it nothing", line)
			}
		})
	}
}

func TestClientFlagsWritableDirectory(t *testing.T) {
	base := testutil.ShortTempDir(t)
	dir := filepath.Join(base, "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	endpoint := "unix://" + filepath.Join(dir, "s.sock")
	startServer(t, endpoint)
	if err := sayHello(t, endpoint, grpcipc.WithExpectedServer("same-user")); err != nil {
		t.Fatalf("safe directories: %v", err)
	}
	for _, writable := range []string{dir, base} {
		if err := os.Chmod(writable, 0o777); err != nil {
			t.Fatal(err)
		}
		err := sayHello(t, endpoint, grpcipc.WithExpectedServer("same-user"))
		if err == nil || !strings.Contains(err.Error(), "directory "+writable+" is writable by others (mode 0777)") {
			t.Errorf("socket under a world-writable %s: %v", writable, err)
		}
		if err := os.Chmod(writable, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	// Without an expectation the default (same-user or root) is checked;
	// "*" trusts any server, wherever its socket is.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := sayHello(t, endpoint); err == nil || !strings.Contains(err.Error(), "is writable by others (mode 0777)") {
		t.Errorf("no expectation, a world-writable socket directory: %v", err)
	}
	if err := sayHello(t, endpoint, grpcipc.WithExpectedServer("*")); err != nil {
		t.Errorf("WithExpectedServer(\"*\"): %v", err)
	}
}

func TestExpectedServerOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		opt      grpcipc.ClientOption
		want     string
	}{
		{"unix:@x", grpcipc.WithExpectedServer(), "no principals"},
		{"unix:@x", grpcipc.WithExpectedServer("usr:x"), `unknown kind "usr"`},
		{"tcp://127.0.0.1:1", grpcipc.WithExpectedServer("root"), "a tcp server has no OS identity"},
		{"unix:@x", grpcipc.WithPins("abc"), "want 64 hex digits"},
		{"unix:@x", grpcipc.WithPins(), "no pins"},
		{"unix:@x", grpcipc.WithTLS(nil), "WithTLS(nil)"},
	} {
		if _, err := grpcipc.NewClient(tc.endpoint, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClient(%s, ...) = %v; want %q", tc.endpoint, err, tc.want)
		}
	}
	if _, err := grpcipc.ServerOptions(grpcipc.WithTLS(&tls.Config{})); err == nil || !strings.Contains(err.Error(), "needs a certificate") {
		t.Errorf("ServerOptions(WithTLS without a certificate) = %v", err)
	}
	if _, err := grpcipc.NewServer(grpcipc.WithTLS(&tls.Config{})); err == nil || !strings.Contains(err.Error(), "needs a certificate") {
		t.Errorf("NewServer(WithTLS without a certificate) = %v", err)
	}
}

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
func serveTLS(t *testing.T, opts ...grpcipc.ServerOption) *guardedServer {
	t.Helper()
	return serveGuarded(t, "unix://"+filepath.Join(testutil.ShortTempDir(t), "s.sock"), opts...)
}

func TestMutualTLSOverUnixSocket(t *testing.T) {
	server, client := newKeyPair(t, "server"), newKeyPair(t, "client")
	gs := serveTLS(t, grpcipc.WithTLS(server.TLSConfig()), grpcipc.WithPins(client.Pin.String()))

	conn := newClient(t, gs.endpoint, grpcipc.WithTLS(client.TLSConfig()), grpcipc.WithPins(server.Pin.String()))
	var p peer.Peer
	if _, err := identitypb.NewIdentityClient(conn).WhoAmI(ctxFor(t), &identitypb.WhoAmIRequest{}, grpc.Peer(&p)); err != nil {
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
	calls := gs.srv.calls.Load()
	stranger := newKeyPair(t, "stranger")
	for name, opts := range map[string][]grpcipc.ClientOption{
		"no certificate":      {grpcipc.WithPins(server.Pin.String())},
		"another certificate": {grpcipc.WithTLS(stranger.TLSConfig()), grpcipc.WithPins(server.Pin.String())},
		"no TLS at all":       nil,
	} {
		if err := sayHello(t, gs.endpoint, opts...); err == nil {
			t.Errorf("%s: the call went through", name)
		}
	}
	if gs.srv.calls.Load() != calls {
		t.Error("a handler ran for a client the server's TLS refused")
	}
}

// A handler sees the client's certificate next to its OS identity, on
// both servers that check callers.
func TestServerCertificateInHandler(t *testing.T) {
	server, client := newKeyPair(t, "server"), newKeyPair(t, "client")
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			var seen []byte
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			l, err := grpcipc.Listen(context.Background(), endpoint)
			if err != nil {
				t.Fatal(err)
			}
			s := k.make(t, grpcipc.WithTLS(server.TLSConfig()), grpcipc.WithPins(client.Pin.String()),
				grpcipc.WithUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					if ai, ok := grpcipc.AuthInfoFromContext(ctx); ok && ai.TLS != nil && ai.Peer != nil {
						seen = ai.TLS.State.PeerCertificates[0].Raw
					}
					return h(ctx, req)
				}))
			greetpb.RegisterGreeterServer(s, benchGreeter{})
			go s.Serve(l)
			defer s.Stop()
			if err := sayHello(t, endpoint, grpcipc.WithTLS(client.TLSConfig()), grpcipc.WithPins(server.Pin.String())); err != nil {
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
		if err := sayHello(t, gs.endpoint, grpcipc.WithPins(pin)); err != nil {
			t.Errorf("pin %s: %v", pin, err)
		}
	}
	wrong := newKeyPair(t, "other").Pin.String()
	err := sayHello(t, gs.endpoint, grpcipc.WithPins(wrong))
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
	if err := sayHello(t, gs.endpoint, grpcipc.WithTLS(&tls.Config{RootCAs: pool})); err != nil {
		t.Errorf("CA verification: %v", err)
	}
	if err := sayHello(t, gs.endpoint, grpcipc.WithTLS(&tls.Config{RootCAs: x509.NewCertPool()})); err == nil {
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
