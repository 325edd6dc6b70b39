package tls

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// TestTLSClientCertificateRefused: a TLS 1.3 client whose certificate the
// server refuses learns it from the call's error, with the server's alert,
// however the race between its first write and the server's close goes;
// and the server logs why.
func TestTLSClientCertificateRefused(t *testing.T) {
	server, client, stranger := newKeyPair(t, "server"), newKeyPair(t, "client"), newKeyPair(t, "stranger")
	expired := expiredKeyPair(t, "expired-client")
	pinned := serveTLS(t, grpcipc.WithTLS(server.TLSConfig()), grpcipc.WithPins(client.Pin, expired.Pin))
	cas := x509.NewCertPool()
	cas.AddCert(client.Certificate.Leaf)
	caCfg := server.TLSConfig()
	caCfg.ClientCAs, caCfg.ClientAuth = cas, tls.RequireAndVerifyClientCert
	withCA := serveTLS(t, grpcipc.WithTLS(caCfg))

	pinServer := grpcipc.WithPins(server.Pin)
	for _, tc := range []struct {
		name string
		gs   *e2e.GuardedServer
		opts []grpcipc.ClientOption
		want []string
		log  string // what the server logs
	}{
		{"certificate not pinned", pinned, []grpcipc.ClientOption{grpcipc.WithTLS(stranger.TLSConfig()), pinServer},
			[]string{"the server refused this client's TLS certificate", "remote error: tls: bad certificate"}, "matches no pinned SHA-256 thumbprint"},
		{"pinned certificate expired", pinned, []grpcipc.ClientOption{grpcipc.WithTLS(expired.TLSConfig()), pinServer},
			[]string{"the server refused this client's TLS certificate", "remote error: tls: bad certificate"}, "expired at"},
		{"certificate not from the client CA", withCA, []grpcipc.ClientOption{grpcipc.WithTLS(stranger.TLSConfig()), pinServer},
			// crypto/tls leaves out a certificate the server's CA list excludes.
			[]string{"the server requires a client certificate signed by a CA it accepts, and this client has no certificate from such a CA", "remote error: tls: certificate required"}, "TLS handshake failed"},
		{"certificate not from the client CA, sent anyway", withCA, []grpcipc.ClientOption{grpcipc.WithTLS(&tls.Config{
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger.Certificate, nil },
		}), pinServer},
			[]string{"the server refused this client's TLS certificate", "remote error: tls: unknown certificate authority"}, "certificate signed by unknown authority"},
		{"no certificate", pinned, []grpcipc.ClientOption{pinServer},
			[]string{"the server requires a client certificate and this client has none", "remote error: tls: certificate required"}, "TLS handshake failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := tc.gs.Srv.Calls.Load()
			// Often enough that both ends of the race show up: the
			// preface written before the server closes, or not.
			for range 20 {
				err := e2e.SayHello(t, tc.gs.Endpoint, tc.opts...)
				if err == nil {
					t.Fatal("the call went through")
				}
				msg := err.Error()
				for _, want := range tc.want {
					if !strings.Contains(msg, want) {
						t.Fatalf("error %q does not say %q", msg, want)
					}
				}
				for _, bad := range []string{"broken pipe", "EOF", "connection reset"} {
					if strings.Contains(msg, bad) {
						t.Fatalf("error %q says %q", msg, bad)
					}
				}
			}
			if tc.gs.Srv.Calls.Load() != calls {
				t.Error("a handler ran for a refused client")
			}
			log := tc.gs.Log.String()
			if !strings.Contains(log, "TLS handshake failed") || !strings.Contains(log, tc.log) {
				t.Errorf("the server's log does not say %q:\n%s", tc.log, log)
			}
		})
	}
	// The accepted client still gets through both servers.
	for _, gs := range []*e2e.GuardedServer{pinned, withCA} {
		if err := e2e.SayHello(t, gs.Endpoint, grpcipc.WithTLS(client.TLSConfig()), pinServer); err != nil {
			t.Errorf("the pinned client: %v", err)
		}
	}
}

// TestPinnedServerCertificateExpired: a client that pins a server's
// certificate, by thumbprint or by public key, refuses it once expired.
func TestPinnedServerCertificateExpired(t *testing.T) {
	server := expiredKeyPair(t, "expired-server")
	gs := serveTLS(t, grpcipc.WithTLS(server.TLSConfig()))
	notAfter := server.Certificate.Leaf.NotAfter.UTC().Format(time.RFC3339)
	for _, pin := range []grpcipc.Pin{server.Pin, grpcipc.SPKIPin(server.Certificate.Leaf)} {
		err := e2e.SayHello(t, gs.Endpoint, grpcipc.WithPins(pin))
		if err == nil {
			t.Fatalf("pin %s: an expired server certificate was accepted", pin)
		}
		for _, want := range []string{grpcipc.ErrCertificateExpired.Error(), "expired at " + notAfter, server.Pin.String()} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("pin %s: error %q does not say %q", pin, err, want)
			}
		}
	}
}

// expiredKeyPair is a self-signed key pair like NewKeyPair's whose
// certificate expired a day ago.
func expiredKeyPair(t *testing.T, name string) *grpcipc.KeyPair {
	t.Helper()
	c, err := testutil.SelfSigned(name, time.Now().Add(-30*24*time.Hour), time.Now().Add(-24*time.Hour).Truncate(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return &grpcipc.KeyPair{Certificate: c, Pin: grpcipc.CertPin(c.Certificate[0])}
}
