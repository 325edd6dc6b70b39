package grpcipc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grpcipc/grpcipc/internal/sockfile"
	"google.golang.org/grpc/credentials"
)

// ErrPinMismatch is wrapped by the TLS handshake error of a peer whose
// certificate matches none of the pins given with [WithPins].
var ErrPinMismatch = errors.New("certificate matches no pinned SHA-256 thumbprint")

// ErrCertificateExpired is wrapped by the TLS handshake error of a peer
// whose certificate matches a pin given with [WithPins] but has expired (or
// is not valid yet): a pin names the certificate, and its validity period
// still applies.
var ErrCertificateExpired = errors.New("pinned certificate is outside its validity period")

// Pin is the SHA-256 thumbprint of a certificate: of its DER encoding
// ("cert") or of its SubjectPublicKeyInfo ("spki"), which survives
// re-issuing the certificate with the same key.
type Pin struct {
	SPKI bool
	Sum  [sha256.Size]byte
}

// ParsePin parses a pin written as 64 hex digits (colons allowed, as
// certificate viewers print them; "sha256:" or "cert:" before them is
// allowed too) for the certificate's thumbprint, or "spki:" and 64 hex
// digits for its public key's.
func ParsePin(s string) (Pin, error) {
	var p Pin
	h := s
	switch {
	case strings.HasPrefix(s, "spki:"):
		p.SPKI, h = true, s[len("spki:"):]
	case strings.HasPrefix(s, "cert:"):
		h = s[len("cert:"):]
	case strings.HasPrefix(s, "sha256:"):
		h = s[len("sha256:"):]
	}
	b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return Pin{}, fmt.Errorf("grpcipc: pin %q: want 64 hex digits of a SHA-256 thumbprint, optionally after \"spki:\"", s)
	}
	copy(p.Sum[:], b)
	return p, nil
}

// String returns the pin in the form ParsePin reads.
func (p Pin) String() string {
	if p.SPKI {
		return "spki:" + hex.EncodeToString(p.Sum[:])
	}
	return hex.EncodeToString(p.Sum[:])
}

// CertPin returns the thumbprint pin of a DER certificate.
func CertPin(der []byte) Pin { return Pin{Sum: sha256.Sum256(der)} }

// SPKIPin returns the public-key pin of a certificate.
func SPKIPin(cert *x509.Certificate) Pin {
	return Pin{SPKI: true, Sum: sha256.Sum256(cert.RawSubjectPublicKeyInfo)}
}

func (p Pin) matches(cert *x509.Certificate) bool {
	if p.SPKI {
		return sha256.Sum256(cert.RawSubjectPublicKeyInfo) == p.Sum
	}
	return sha256.Sum256(cert.Raw) == p.Sum
}

// KeyPair is a fresh self-signed ECDSA P-256 certificate and its key, for a
// server and a client that start each other and exchange pins instead of
// using a CA (the idea of hashicorp/go-plugin's AutoMTLS): each side makes
// its own with [NewKeyPair], gives the other its Pin, and pins the other's.
type KeyPair struct {
	// Certificate is the certificate and key, ready for a [tls.Config].
	Certificate tls.Certificate
	// Pin is the certificate's SHA-256 thumbprint, for the other side's
	// [WithPins].
	Pin Pin
}

// NewKeyPair makes a key pair whose certificate names name (as its common
// name and DNS name, along with "localhost"), valid for a year: an ECDSA
// P-256 key, for tests and for a server that pins its clients or is
// pinned by them ([WithPins]). It fails only if the system's random source
// does.
func NewKeyPair(name string) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: making a key pair: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("grpcipc: making a key pair: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name, "localhost"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		// Self-signed, so that it can also serve as its own CA for a peer
		// that verifies chains rather than pins.
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: making a key pair: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: making a key pair: %w", err)
	}
	return &KeyPair{
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Pin:         CertPin(der),
	}, nil
}

// TLSConfig returns a TLS 1.3 configuration that presents the key pair's
// certificate, for [WithTLS].
func (k *KeyPair) TLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{k.Certificate}, MinVersion: tls.VersionTLS13}
}

// PEM returns the certificate and the private key PEM-encoded, for files
// that other programs (or the grpcipc command's --cert and --key) read.
func (k *KeyPair) PEM() (cert, key []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Certificate.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	var c, kb bytes.Buffer
	pem.Encode(&c, &pem.Block{Type: "CERTIFICATE", Bytes: k.Certificate.Certificate[0]})
	pem.Encode(&kb, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return c.Bytes(), kb.Bytes(), nil
}

// tlsSettings is what WithTLS and WithPins said, for either side.
type tlsSettings struct {
	cfg  *tls.Config
	pins []Pin
}

func (s *tlsSettings) enabled() bool { return s.cfg != nil || len(s.pins) > 0 }

// requiresClientCert: on a server, every client must present a certificate
// that is verified, against pins or a CA.
func (s *tlsSettings) requiresClientCert() bool {
	return len(s.pins) > 0 || s.cfg != nil && s.cfg.ClientAuth == tls.RequireAndVerifyClientCert
}

// credentials builds grpc-go's TLS credentials for the client (server
// false) or the server.
func (s *tlsSettings) credentials(server bool) (credentials.TransportCredentials, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg != nil {
		cfg = s.cfg.Clone()
	}
	if server && len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return nil, errors.New("grpcipc: TLS on the server needs a certificate (tls.Config.Certificates)")
	}
	if len(s.pins) > 0 {
		pins := s.pins
		if server {
			// Pins stand for a CA: ask for any certificate, check the pin.
			if cfg.ClientAuth < tls.RequireAnyClientCert {
				cfg.ClientAuth = tls.RequireAnyClientCert
			}
		} else if cfg.RootCAs == nil {
			// No CA given: the pin is the whole verification, done below
			// on the certificate presented.
			cfg.InsecureSkipVerify = true
		}
		next, clock := cfg.VerifyConnection, cfg.Time
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: the peer presented no certificate", ErrPinMismatch)
			}
			leaf := cs.PeerCertificates[0]
			matched := false
			for _, p := range pins {
				if p.matches(leaf) {
					matched = true
					break
				}
			}
			if !matched {
				want := make([]string, len(pins))
				for i, p := range pins {
					want[i] = p.String()
				}
				return fmt.Errorf("%w: the peer's certificate is %s (%s); want %s",
					ErrPinMismatch, CertPin(leaf.Raw), SPKIPin(leaf), strings.Join(want, " or "))
			}
			now := time.Now()
			if clock != nil {
				now = clock()
			}
			if err := checkValidity(leaf, now); err != nil {
				return err
			}
			if next != nil {
				return next(cs)
			}
			return nil
		}
	}
	creds := credentials.NewTLS(cfg)
	if server {
		return creds, nil
	}
	return &clientTLS{TransportCredentials: creds,
		hasCert: len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil, serverName: cfg.ServerName}, nil
}

// checkValidity refuses a pinned certificate outside its validity period
// at now: the same rule as a CA's, since expiry is how the certificate's
// issuer (for a self-signed one, its maker) retires it; an "spki:" pin
// survives re-issuing, and the certificate presented must be current.
func checkValidity(leaf *x509.Certificate, now time.Time) error {
	const layout = time.RFC3339
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("%w: the peer's certificate %s (%s) expired at %s (now %s)", ErrCertificateExpired,
			CertPin(leaf.Raw), SPKIPin(leaf), leaf.NotAfter.UTC().Format(layout), now.UTC().Format(layout))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("%w: the peer's certificate %s (%s) is not valid before %s (now %s)", ErrCertificateExpired,
			CertPin(leaf.Raw), SPKIPin(leaf), leaf.NotBefore.UTC().Format(layout), now.UTC().Format(layout))
	}
	return nil
}

// clientTLS is the client's TLS credentials. In TLS 1.3 the client's
// handshake ends before the server has checked the client's certificate,
// so a refusal arrives as an alert after it, where grpc-go first writes
// its preface and may see only "broken pipe" or a reset; the connection it
// returns names the refusal instead (see refusalConn).
type clientTLS struct {
	credentials.TransportCredentials
	hasCert    bool   // the configuration has a client certificate to offer
	serverName string // tls.Config.ServerName, which grpc-go replaces with the authority
}

func (c *clientTLS) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.serverName != "" {
		authority = c.serverName // grpc-go verifies the certificate for the authority's host
	}
	tconn, ai, err := c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	if err != nil {
		return nil, nil, err
	}
	if info, ok := ai.(credentials.TLSInfo); ok && info.State.Version >= tls.VersionTLS13 {
		tconn = &refusalConn{Conn: tconn, hasCert: c.hasCert}
	}
	return tconn, ai, nil
}

func (c *clientTLS) Clone() credentials.TransportCredentials {
	return &clientTLS{TransportCredentials: c.TransportCredentials.Clone(), hasCert: c.hasCert, serverName: c.serverName}
}

// refusalWait is how long a client whose write failed before it read
// anything waits to read the server's alert.
const refusalWait = time.Second

// refusalConn is a TLS 1.3 client connection that, until it has read
// something from the server, turns the server's alert, or a write failing
// because the server closed the connection after sending one, into an
// error that says the server refused the client (its certificate, as a
// rule) and carries the alert.
type refusalConn struct {
	net.Conn
	hasCert  bool
	accepted atomic.Bool // data came from the server: it took the client
}

func (c *refusalConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.accepted.Store(true)
	}
	if err != nil && !c.accepted.Load() {
		if r := refusal(err, c.hasCert); r != nil {
			return n, r
		}
	}
	return n, err
}

func (c *refusalConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil || c.accepted.Load() || !peerClosed(err) {
		return n, err
	}
	// The server closed the connection; if it sent an alert first, the
	// alert is there to read (or grpc-go's reader has read it, and the
	// TLS connection returns it again).
	c.Conn.SetReadDeadline(time.Now().Add(refusalWait))
	rn, rerr := c.Conn.Read(make([]byte, 1))
	if rn == 0 && rerr != nil {
		if r := refusal(rerr, c.hasCert); r != nil {
			return n, r
		}
	}
	return n, err
}

// peerClosed tells whether a write failed because the other end closed.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || sockfile.IsPeerClosed(err)
}

// refusal returns the error for a client that read err, when err is a TLS
// alert from the server, or nil.
func refusal(err error, hasCert bool) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		return nil
	}
	required := op.Err != nil && op.Err.Error() == tls.AlertError(116).Error() // certificate_required
	switch {
	case required && hasCert:
		// crypto/tls sends no certificate the server's CA list excludes.
		return fmt.Errorf("grpcipc: the server requires a client certificate signed by a CA it accepts, and this client has no certificate from such a CA (so it sent none): %w", err)
	case required:
		return fmt.Errorf("grpcipc: the server requires a client certificate and this client has none: %w", err)
	case hasCert:
		return fmt.Errorf("grpcipc: the server refused this client's TLS certificate: %w", err)
	}
	return fmt.Errorf("grpcipc: the server refused the connection after the TLS handshake: %w", err)
}
