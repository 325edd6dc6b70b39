package grpcipc

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
)

// Options, one file per kind: this file holds the option types and the
// options that fit more than one constructor; server_options.go,
// client_options.go and listen_options.go those of one constructor each,
// with their defaults; child.go StartChild's. An option that fits several
// constructors is a named struct type (PolicyOption, TLSOption,
// MemoryBudgetOption, LoggerOption) that is an option of each kind it
// fits, so that the compiler refuses it where it does not.

// ListenOption configures [Listen]. An option that does not apply to the
// endpoint's transport (a file mode for an abstract socket, say) makes
// Listen fail rather than being ignored.
type ListenOption interface {
	applyListen(*listenConfig) error
}

// ClientOption configures [NewClient].
type ClientOption interface {
	applyClient(*clientConfig) error
}

// ServerOption configures [NewServer] and [ServerOptions].
type ServerOption interface {
	applyServer(*serverConfig) error
}

// PolicyOption is what [WithPolicy] returns: a [ServerOption] that makes
// the server admit callers by a policy, and a [ListenOption] that gives the
// socket the permissions that policy needs.
type PolicyOption struct{ p *Policy }

func (o PolicyOption) applyServer(c *serverConfig) error {
	if o.p == nil {
		return errors.New("grpcipc: nil policy")
	}
	c.policy, c.policySet = o.p, true
	return nil
}

func (o PolicyOption) applyListen(c *listenConfig) error {
	if o.p == nil {
		return errors.New("nil policy")
	}
	if c.ep.Transport == TCP {
		return errors.New("a policy needs a local endpoint: tcp connections carry no OS identity")
	}
	c.policy = o.p
	return nil
}

// WithPolicy admits callers by p instead of [SameUserPolicy].
//
// Given to [NewServer] (or [ServerOptions]), it is what the server checks:
// every connection's OS identity is read when it is accepted and a caller
// the policy admits to no method is refused before a byte of its is read;
// per-method rules are checked on every call. Policies apply to local
// connections (unix, unix-abstract, npipe); tcp connections carry no OS
// identity.
//
// The socket itself lets in those the policy admits, so that they can
// reach the server: a policy that admits only the server's user keeps
// 0600; one that admits one group makes the socket 0660 and that group's
// (the server must be root or a member); one that admits any other user
// makes it 0666, and the server's check decides who is served. On Windows
// it sets the named pipe's DACL.
//
// Give it once, to either: given to [NewServer] only, [Server.Serve] sets
// the permissions of a socket file [Listen] made with its defaults (and of
// the directory Listen created) from it, before it accepts a connection;
// given to [Listen] only, the server checks that listener's callers with
// it. Given to both, each keeps its own, and Serve logs a warning when the
// socket's permissions are narrower or wider than the server's policy
// needs; an explicit [WithSocketMode] likewise. Windows: a named pipe's
// DACL is made by Listen, so give a policy that admits other users to
// Listen (Serve warns otherwise). A grpc.Server made with [ServerOptions]
// serves listeners as Listen made them: give it and Listen the policy.
func WithPolicy(p *Policy) PolicyOption { return PolicyOption{p: p} }

// LoggerOption is what [WithLogger] returns: a [ServerOption] and a
// [ClientOption].
type LoggerOption struct{ l *slog.Logger }

// WithLogger sets where grpcipc logs (default [slog.Default]). A server
// logs refused callers, connections closed for breaking the protocol and
// calls ended for want of memory (warnings, rate-limited per caller); a
// client logs which protocol each connection speaks (debug).
func WithLogger(l *slog.Logger) LoggerOption { return LoggerOption{l: l} }

func (o LoggerOption) applyServer(c *serverConfig) error {
	if o.l == nil {
		return errors.New("grpcipc: nil logger")
	}
	c.logger = o.l
	return nil
}

func (o LoggerOption) applyClient(c *clientConfig) error {
	if o.l == nil {
		return errors.New("grpcipc: nil logger")
	}
	c.logger = o.l
	return nil
}

// TLSOption is what [WithTLS] and [WithPins] return: a [ServerOption] and
// a [ClientOption].
type TLSOption struct{ set func(*tlsSettings) error }

func (o TLSOption) applyServer(c *serverConfig) error { return o.set(&c.tls) }

func (o TLSOption) applyClient(c *clientConfig) error { return o.set(&c.tls) }

// WithTLS runs TLS over the local connection, on top of the OS identity
// check (both must pass; [AuthInfo] carries both). On the server cfg must
// hold a certificate; set ClientAuth and ClientCAs to require client
// certificates (mutual TLS). On the client, RootCAs verifies the server
// unless [WithPins] pins it, for the name in ServerName ("localhost" when
// empty; a tcp endpoint's host).
func WithTLS(cfg *tls.Config) TLSOption {
	return TLSOption{func(s *tlsSettings) error {
		if cfg == nil {
			return errors.New("grpcipc: WithTLS(nil)")
		}
		s.cfg = cfg
		return nil
	}}
}

// WithPins accepts the peer's certificate by its SHA-256 thumbprint
// ([CertPin], [SPKIPin], a [KeyPair]'s Pin, or [ParsePin] from text)
// instead of a CA, as the reference docs' certificate
// validation callback does. On the client it turns TLS on and pins the
// server's certificate; on the server it requires a client certificate that
// matches one of the pins (mutual TLS). A mismatch fails the handshake with
// [ErrPinMismatch], naming the certificate's thumbprints.
//
// A pinned certificate must also be within its validity period (NotBefore
// to NotAfter, by tls.Config.Time if set): a pin names one certificate, and
// expiry is how its issuer retires it. An "spki:" pin survives re-issuing
// with the same key, and the certificate presented must still be current.
// Otherwise the handshake fails with [ErrCertificateExpired], saying when
// the certificate expired.
//
// With TLS 1.3 a client learns that the server refused its certificate
// only after its own handshake; its calls then fail with an error that
// says so and carries the server's alert ("remote error: tls: bad
// certificate"), while the server logs the reason.
func WithPins(pins ...Pin) TLSOption {
	return TLSOption{func(s *tlsSettings) error {
		if len(pins) == 0 {
			return errors.New("grpcipc: WithPins with no pins")
		}
		for _, p := range pins {
			if p == (Pin{}) {
				return errors.New("grpcipc: WithPins: the zero Pin names no certificate (make one with CertPin, SPKIPin or ParsePin)")
			}
		}
		s.pins = append(s.pins, pins...)
		return nil
	}}
}

// DefaultConnMemoryBudget is how much memory one fast-path connection's
// peer can make the other side hold (docs/protocol.md, "Memory budgets"):
// messages received and not yet taken by handlers (or, on a client, by the
// caller), messages arriving in parts, and the metadata of open calls,
// each counted at no less than what it really occupies. It grows to twice
// the receive limit when that is larger.
const DefaultConnMemoryBudget = 64 << 20

// MemoryBudgetOption sets a fast-path connection's memory budget: it is
// both a [ServerOption] (each connection a server accepts) and a
// [ClientOption] (each connection the client makes). See
// [WithConnMemoryBudget].
type MemoryBudgetOption struct{ n int64 }

// WithConnMemoryBudget sets how much memory the peer of one fast-path
// connection can make this side hold (default [DefaultConnMemoryBudget]):
// received messages not yet taken, messages arriving in parts, metadata
// of open calls. When it is full the connection is not read until memory
// is released (the peer's own calls wait); if none is within a second,
// the calls holding the most of the budget end with
// codes.ResourceExhausted, largest first, until the message that found
// no room fits (or its own call is the largest), and the other calls go
// on. It must hold one message of the receive limit and a bit (an eighth
// more and 2 MiB): NewServer fails for a smaller one, and NewClient for
// one smaller than that for gRPC's default receive limit (4 MiB). A
// client's default grows with the receive limits its calls set
// (grpc.MaxCallRecvMsgSize); one set here does not.
func WithConnMemoryBudget(n int64) MemoryBudgetOption { return MemoryBudgetOption{n: n} }

func (o MemoryBudgetOption) applyServer(c *serverConfig) error {
	if o.n <= 0 {
		return fmt.Errorf("grpcipc: a memory budget of %d bytes is not positive", o.n)
	}
	c.connBudget = o.n
	return nil
}

func (o MemoryBudgetOption) applyClient(c *clientConfig) error {
	if o.n <= 0 {
		return fmt.Errorf("grpcipc: a memory budget of %d bytes is not positive", o.n)
	}
	if floor := budgetFloor(DefaultMaxCallRecvMsgSize); o.n < floor {
		return fmt.Errorf("grpcipc: a connection memory budget of %d bytes cannot hold one message of gRPC's default receive limit (%d bytes): it needs at least %d", o.n, DefaultMaxCallRecvMsgSize, floor)
	}
	c.connBudget = o.n
	return nil
}

// budgetFloor is the least budget that holds one message of max bytes
// arriving in parts, and a frame besides.
func budgetFloor(max int) int64 {
	return int64(max) + int64(max)/8 + 2<<20
}
