package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

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

type listenConfig struct {
	ep      Endpoint
	mode    fs.FileMode
	modeSet bool
	gid     int // group to give the socket file, or -1
	self    identity
	policy  *Policy
}

type clientConfig struct {
	ep       Endpoint
	grpcOpts []grpc.DialOption
	tls      tlsSettings
	expect   []Principal // the server must match one (none: no check)
	identify bool        // named pipes: Identification, not Anonymous
	http2    bool        // speak HTTP/2 only
	unary    []grpc.UnaryClientInterceptor
	stream   []grpc.StreamClientInterceptor
	// dial, when set, makes the connections instead of dialling ep (a
	// child's inherited connection).
	dial func(context.Context) (net.Conn, error)
	// connBudget: the fast-path memory budget of each connection (0: the
	// default, which grows with the calls' receive limits)
	connBudget int64
}

// ServerOption configures [ServerOptions].
type ServerOption interface {
	applyServer(*serverConfig) error
}

type serverConfig struct {
	tls              tlsSettings
	handshakeTimeout time.Duration

	policy             *Policy
	policySet          bool // WithPolicy was given
	logger             *slog.Logger
	maxPerCaller       int
	unauthenticatedTCP bool

	unary    []grpc.UnaryServerInterceptor
	stream   []grpc.StreamServerInterceptor
	stats    []stats.Handler
	maxRecv  int
	maxSend  int
	grpcOpts []grpc.ServerOption
	// fast-path memory budgets, in bytes (0: the default)
	connBudget, callerBudget int64
}

// newServerConfig applies opts to the defaults.
func newServerConfig(opts []ServerOption) (serverConfig, error) {
	cfg := serverConfig{
		handshakeTimeout: DefaultHandshakeTimeout,
		maxPerCaller:     DefaultMaxConnsPerCaller,
		maxRecv:          DefaultMaxRecvMsgSize,
		maxSend:          DefaultMaxSendMsgSize,
	}
	for _, o := range opts {
		if o == nil {
			return serverConfig{}, errors.New("grpcipc: nil ServerOption")
		}
		if err := o.applyServer(&cfg); err != nil {
			return serverConfig{}, err
		}
	}
	if err := cfg.setBudgets(); err != nil {
		return serverConfig{}, err
	}
	if cfg.policy == nil {
		cfg.policy = SameUserPolicy()
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	return cfg, nil
}

// DefaultHandshakeTimeout is how long [ServerOptions] lets a new
// connection take to finish its handshakes, up to and including HTTP/2's
// preface, before closing it: a local peer that says nothing for that long
// is stuck or hostile. grpc-go's own default is 120 s.
const DefaultHandshakeTimeout = 5 * time.Second

// WithHandshakeTimeout sets how long a new connection may take to finish
// its handshakes (default [DefaultHandshakeTimeout]).
func WithHandshakeTimeout(d time.Duration) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		if d <= 0 {
			return fmt.Errorf("grpcipc: handshake timeout %v is not positive", d)
		}
		c.handshakeTimeout = d
		return nil
	})
}

type serverOptionFunc func(*serverConfig) error

func (f serverOptionFunc) applyServer(c *serverConfig) error { return f(c) }

type listenOptionFunc func(*listenConfig) error

func (f listenOptionFunc) applyListen(c *listenConfig) error { return f(c) }

type clientOptionFunc func(*clientConfig) error

func (f clientOptionFunc) applyClient(c *clientConfig) error { return f(c) }

// WithSocketMode sets the permission bits of a Unix socket file (default
// 0600: only the server's own user can connect). The mode is set before the
// socket accepts its first connection. Only the permission bits (0777) may
// be set, and only for unix endpoints with a path.
func WithSocketMode(mode fs.FileMode) ListenOption {
	return listenOptionFunc(func(c *listenConfig) error {
		if c.ep.Transport != Unix {
			return fmt.Errorf("listen %s: a socket file mode applies only to unix socket paths, not to %s endpoints", c.ep, c.ep.Transport)
		}
		if mode&^fs.ModePerm != 0 {
			return fmt.Errorf("listen %s: socket mode %v has bits other than permissions", c.ep, mode)
		}
		c.mode, c.modeSet = mode, true
		return nil
	})
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
		return fmt.Errorf("listen %s: nil policy", c.ep)
	}
	if c.ep.Transport == TCP {
		return fmt.Errorf("listen %s: a policy needs a local endpoint: tcp connections carry no OS identity", c.ep)
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

// WithUnauthenticatedTCP lets a server serve tcp callers that present no
// TLS client certificate. Over TCP there is no OS identity: every process
// that can reach the port (every local user on a loopback address, every
// host on the network otherwise) may then call every method, and handlers
// cannot tell who called. Without TLS, only loopback peers are served. Use
// it for a service that is public by design; otherwise require client
// certificates ([WithTLS] with tls.RequireAndVerifyClientCert, or
// [WithPins]). The server logs a warning when it serves a tcp listener
// this way; it does not apply to local listeners, which always check the
// caller's OS identity.
func WithUnauthenticatedTCP() ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		c.unauthenticatedTCP = true
		return nil
	})
}

// DefaultMaxConnsPerCaller is how many connections one caller (a uid, or a
// SID) other than the server's own user and root may hold open on a
// server: a client needs one or a few, and each costs the server a
// descriptor and buffers, so a user the policy admits to some method
// cannot use up the server's descriptors. Beyond it a connection is
// closed at once, and logged.
const DefaultMaxConnsPerCaller = 256

// WithMaxConnsPerCaller sets the bound [DefaultMaxConnsPerCaller]
// describes; 0 removes it.
func WithMaxConnsPerCaller(n int) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		if n < 0 {
			return fmt.Errorf("grpcipc: a connection limit of %d is negative", n)
		}
		c.maxPerCaller = n
		return nil
	})
}

// WithLogger sets where a server logs refused callers and dropped
// connections (default [slog.Default]).
func WithLogger(l *slog.Logger) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		if l == nil {
			return errors.New("grpcipc: nil logger")
		}
		c.logger = l
		return nil
	})
}

// WithExpectedServer makes [NewClient] check the server's OS identity
// before it sends a byte of a request: the process at the other end of the
// socket must match one of principals (see [ParsePrincipal]; "same-user" is
// the client's own user, "root" is uid 0 or, on Windows, SYSTEM). On a Unix
// socket path the socket file's owner must match too, and no directory
// from the socket's up to / may be writable by another user unless it is
// sticky and owned by root or the expected user, so that the socket could
// not have been swapped. A mismatch fails the connection with an error
// wrapping [ErrUntrustedServer] that names the expected and the actual
// identity. Without this option a client expects "same-user" or "root";
// "*" trusts any server and turns the socket file checks off.
func WithExpectedServer(principals ...string) ClientOption {
	return clientOptionFunc(func(c *clientConfig) error {
		if len(principals) == 0 {
			return fmt.Errorf("grpcipc: WithExpectedServer with no principals")
		}
		if c.ep.Transport == TCP {
			return fmt.Errorf("grpcipc: %s: a tcp server has no OS identity to check; use TLS with WithPins or a CA", c.ep)
		}
		for _, s := range principals {
			p, err := ParsePrincipal(s)
			if err != nil {
				return err
			}
			if err := checkExeBounded(p); err != nil {
				return fmt.Errorf("grpcipc: expected server: %w", err)
			}
			c.expect = append(c.expect, p)
		}
		return nil
	})
}

// WithPipeIdentification lets a named-pipe server identify the client at
// the Identification impersonation level. By default grpcipc's clients
// connect at the Anonymous level, as the reference docs advise: a server
// can then neither act as the client nor learn its identity by
// impersonating it (grpcipc's servers read it from the client's process
// token instead). Only for npipe endpoints.
func WithPipeIdentification() ClientOption {
	return clientOptionFunc(func(c *clientConfig) error {
		if c.ep.Transport != NamedPipe {
			return fmt.Errorf("grpcipc: %s: an impersonation level applies only to named pipes", c.ep)
		}
		c.identify = true
		return nil
	})
}

// WithGRPCDialOptions adds grpc-go dial options to those [NewClient] sets,
// after grpcipc's own. They configure a grpc.ClientConn, so a client given
// them speaks HTTP/2 (as with [WithHTTP2]): an interceptor or a per-RPC
// credential among them is never skipped. Use [WithUnaryClientInterceptor]
// and [WithStreamClientInterceptor] for interceptors that also run on the
// fast path. Options that set transport credentials are an error: they
// would replace grpcipc's check of the server. Use [WithTLS] or
// [WithPins] for TLS, or [ClientCredentials] with [Dial] for a
// [grpc.ClientConn] of your own.
func WithGRPCDialOptions(opts ...grpc.DialOption) ClientOption {
	return clientOptionFunc(func(c *clientConfig) error {
		c.grpcOpts = append(c.grpcOpts, opts...)
		c.http2 = c.http2 || len(opts) > 0
		return nil
	})
}
