package grpcipc

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// keyPairValidBetween is a self-signed key pair like NewKeyPair's with the
// validity period given, for tests of expired certificates.
func keyPairValidBetween(name string, notBefore, notAfter time.Time) (*KeyPair, error) {
	c, err := testutil.SelfSigned(name, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Certificate: c, Pin: CertPin(c.Certificate[0])}, nil
}

// pinHandshake runs grpcipc's TLS handshakes, each side pinning the other,
// over a pipe, and returns each side's error; the client's is its
// handshake's, or else what its first read got.
func pinHandshake(t *testing.T, server, client *KeyPair, serverPin, clientPin Pin, clientCfg *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	if clientCfg == nil {
		clientCfg = client.TLSConfig()
	}
	sc, err := (&tlsSettings{cfg: server.TLSConfig(), pins: []Pin{clientPin}}).credentials(true)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&tlsSettings{cfg: clientCfg, pins: []Pin{serverPin}}).credentials(false)
	if err != nil {
		t.Fatal(err)
	}
	cs, ss := net.Pipe()
	done := make(chan error, 1)
	go func() {
		conn, _, err := sc.ServerHandshake(ss)
		if err == nil {
			conn.Close()
		}
		ss.Close()
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, clientErr := cc.ClientHandshake(ctx, "localhost", cs)
	if clientErr == nil {
		_, clientErr = conn.Read(make([]byte, 1)) // the server's alert, or EOF
		conn.Close()
	}
	cs.Close()
	return <-done, clientErr
}

func TestPinnedCertificateValidity(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	day := 24 * time.Hour
	mk := func(name string, from, to time.Time) *KeyPair {
		kp, err := keyPairValidBetween(name, from, to)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	current, client := mk("server", now.Add(-day), now.Add(day)), mk("client", now.Add(-day), now.Add(day))
	expired, future := mk("expired", now.Add(-30*day), now.Add(-day)), mk("future", now.Add(day), now.Add(30*day))
	layout := time.RFC3339

	for _, tc := range []struct {
		name   string
		server *KeyPair
		spki   bool
		want   string
	}{
		{"expired", expired, false, "expired at " + now.Add(-day).UTC().Format(layout)},
		{"expired, spki pin", expired, true, "expired at " + now.Add(-day).UTC().Format(layout)},
		{"not yet valid", future, false, "is not valid before " + now.Add(day).UTC().Format(layout)},
	} {
		t.Run("server certificate "+tc.name, func(t *testing.T) {
			pin := tc.server.Pin
			if tc.spki {
				pin = SPKIPin(tc.server.Certificate.Leaf)
			}
			_, err := pinHandshake(t, tc.server, client, pin, client.Pin, nil)
			if !errors.Is(err, ErrCertificateExpired) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.server.Pin.String()) {
				t.Errorf("client's error %v; want ErrCertificateExpired saying %q and naming %s", err, tc.want, tc.server.Pin)
			}
			if errors.Is(err, ErrPinMismatch) {
				t.Errorf("client's error %v is a pin mismatch; the pin matched", err)
			}
		})
	}

	t.Run("client certificate expired", func(t *testing.T) {
		serverErr, clientErr := pinHandshake(t, current, expired, current.Pin, expired.Pin, nil)
		if !errors.Is(serverErr, ErrCertificateExpired) || !strings.Contains(serverErr.Error(), "expired at") {
			t.Errorf("server's error %v; want ErrCertificateExpired", serverErr)
		}
		want := "grpcipc: the server refused this client's TLS certificate: remote error: tls: bad certificate"
		if clientErr == nil || clientErr.Error() != want {
			t.Errorf("client's read: %v; want %q", clientErr, want)
		}
	})

	t.Run("tls.Config.Time is the clock", func(t *testing.T) {
		cfg := client.TLSConfig()
		cfg.Time = func() time.Time { return now.Add(-10 * day) }
		if serverErr, clientErr := pinHandshake(t, expired, client, expired.Pin, client.Pin, cfg); serverErr != nil || clientErr == nil || !errors.Is(clientErr, io.EOF) {
			t.Errorf("a certificate valid at the configured time: server %v, client %v", serverErr, clientErr)
		}
	})

	t.Run("current certificates", func(t *testing.T) {
		if serverErr, clientErr := pinHandshake(t, current, client, current.Pin, client.Pin, nil); serverErr != nil || !errors.Is(clientErr, io.EOF) {
			t.Errorf("server %v, client %v; want both accepted", serverErr, clientErr)
		}
	})
}
