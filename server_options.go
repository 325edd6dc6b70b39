package grpcipc

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Message size limits a server applies unless told otherwise: gRPC's own.
const (
	// DefaultMaxRecvMsgSize is the largest message a server receives, as
	// in grpc-go: 4 MiB.
	DefaultMaxRecvMsgSize = 4 << 20
	// DefaultMaxSendMsgSize is the largest message a server sends: no
	// limit beyond what a length field holds, as in grpc-go.
	DefaultMaxSendMsgSize = math.MaxInt32
)

// WithUnaryInterceptor adds unary interceptors to a server, on both
// protocols, after grpcipc's own check of the policy; the first given runs
// first, as with [grpc.ChainUnaryInterceptor].
func WithUnaryInterceptor(i ...grpc.UnaryServerInterceptor) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		for _, x := range i {
			if x == nil {
				return errors.New("grpcipc: nil unary interceptor")
			}
		}
		c.unary = append(c.unary, i...)
		return nil
	})
}

// WithStreamInterceptor adds stream interceptors to a server, on both
// protocols, after grpcipc's own check of the policy; the first given runs
// first, as with [grpc.ChainStreamInterceptor].
func WithStreamInterceptor(i ...grpc.StreamServerInterceptor) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		for _, x := range i {
			if x == nil {
				return errors.New("grpcipc: nil stream interceptor")
			}
		}
		c.stream = append(c.stream, i...)
		return nil
	})
}

// WithStatsHandler adds a [stats.Handler] to a server (otelgrpc's server
// handler, say; examples/otel shows its traces and metrics alike on both
// protocols). It sees the calls of both protocols alike: TagRPC, InHeader,
// Begin, InPayload and OutPayload per message, OutHeader with the first
// message (or SendHeader), OutTrailer and End for every call; TagConn,
// ConnBegin and ConnEnd for every connection. On the fast path
// InHeader.Header holds the caller's metadata only (HTTP/2 adds
// :authority, content-type and user-agent), WireLength counts the fast
// path's frame headers, and there is no compression.
func WithStatsHandler(h stats.Handler) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		if h == nil {
			return errors.New("grpcipc: nil stats handler")
		}
		c.stats = append(c.stats, h)
		return nil
	})
}

// WithMaxRecvMsgSize sets the largest message a server receives (default
// [DefaultMaxRecvMsgSize]), on both protocols. A larger one fails its call
// with codes.ResourceExhausted.
func WithMaxRecvMsgSize(n int) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		if n <= 0 {
			return fmt.Errorf("grpcipc: a message size limit of %d is not positive", n)
		}
		c.maxRecv = n
		return nil
	})
}

// WithMaxSendMsgSize sets the largest message a server sends (default
// [DefaultMaxSendMsgSize]), on both protocols. A handler's larger reply
// fails its call with codes.ResourceExhausted.
func WithMaxSendMsgSize(n int) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		if n <= 0 {
			return fmt.Errorf("grpcipc: a message size limit of %d is not positive", n)
		}
		c.maxSend = n
		return nil
	})
}

// WithGRPCServerOptions adds grpc-go server options. They apply to HTTP/2
// only: the grpc.Server that [NewServer] embeds for HTTP/2 clients gets
// them, the fast path does not see them (use [WithUnaryInterceptor],
// [WithStreamInterceptor], [WithStatsHandler], [WithMaxRecvMsgSize] and
// [WithMaxSendMsgSize] for what must apply to both). Keepalive, HTTP/2
// window sizes, grpc.MaxConcurrentStreams and encoders are examples.
// Transport credentials among them are replaced by grpcipc's, which check
// the callers: use [WithTLS] or [WithPins] for TLS.
func WithGRPCServerOptions(opts ...grpc.ServerOption) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		c.grpcOpts = append(c.grpcOpts, opts...)
		return nil
	})
}

// grpcOptions is what a grpc.Server needs to apply cfg: the policy's
// check of every call as its headers arrive (authorizeTap), limits,
// interceptors after the policy's, stats handlers.
func (cfg *serverConfig) grpcOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.InTapHandle(authorizeTap),
		grpc.MaxRecvMsgSize(cfg.maxRecv),
		grpc.MaxSendMsgSize(cfg.maxSend),
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{authorizeUnary}, cfg.unary...)...),
		grpc.ChainStreamInterceptor(append([]grpc.StreamServerInterceptor{authorizeStream}, cfg.stream...)...),
	}
	for _, h := range cfg.stats {
		opts = append(opts, grpc.StatsHandler(h))
	}
	return append(opts, cfg.grpcOpts...)
}

// DefaultCallerMemoryBudget is how much all the fast-path connections of
// one caller (a uid) other than the server's own user and root can make a
// server hold together. Left to its default, it grows to the connection
// budget when that is larger.
const DefaultCallerMemoryBudget = 256 << 20

// WithCallerMemoryBudget sets how much memory all the fast-path
// connections of one caller other than the server's own user and root can
// make the server hold together (default [DefaultCallerMemoryBudget], or
// the connection budget when that is larger; a smaller one set here makes
// NewServer fail). A caller at its budget waits, and then
// has its calls ended, as [WithConnMemoryBudget] says; other callers do
// not notice.
func WithCallerMemoryBudget(n int64) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		if n <= 0 {
			return fmt.Errorf("grpcipc: a memory budget of %d bytes is not positive", n)
		}
		c.callerBudget = n
		return nil
	})
}

// setBudgets fills in the budgets' defaults and checks those set.
func (cfg *serverConfig) setBudgets() error {
	floor := budgetFloor(cfg.maxRecv)
	switch {
	case cfg.connBudget == 0:
		cfg.connBudget = max(DefaultConnMemoryBudget, 2*int64(cfg.maxRecv))
	case cfg.connBudget < floor:
		return fmt.Errorf("grpcipc: a connection memory budget of %d bytes cannot hold one message of the receive limit (%d bytes): it needs at least %d", cfg.connBudget, cfg.maxRecv, floor)
	}
	switch {
	case cfg.callerBudget == 0:
		cfg.callerBudget = max(DefaultCallerMemoryBudget, cfg.connBudget)
	case cfg.callerBudget < cfg.connBudget:
		return fmt.Errorf("grpcipc: a caller memory budget of %d bytes is smaller than the connection budget, %d", cfg.callerBudget, cfg.connBudget)
	}
	return nil
}

// errTapTaken: WithGRPCServerOptions was given grpc.InTapHandle, which
// grpc-go lets a server have once, and grpcipc's policy check is it.
var errTapTaken = errors.New("grpcipc: WithGRPCServerOptions: grpc.InTapHandle is taken by grpcipc, which applies the policy to every call there, before a byte of its request is read; use WithUnaryInterceptor, WithStreamInterceptor or WithStatsHandler instead")

// checkGRPCOptions refuses grpc-go options that cannot go with grpcipc's
// own: a tap handle (grpc.NewServer would panic on a second one).
func checkGRPCOptions(opts []grpc.ServerOption) (err error) {
	if len(opts) == 0 {
		return nil
	}
	defer func() {
		if recover() != nil {
			err = errTapTaken
		}
	}()
	// grpc-go's options are opaque: the only way to tell is to apply
	// them after a tap of ours, on a server that never serves.
	grpc.NewServer(append([]grpc.ServerOption{grpc.InTapHandle(authorizeTap)}, opts...)...).Stop()
	return nil
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
	maxFilesPerCall          int
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
// its handshakes (default [DefaultHandshakeTimeout]). The connection a
// child inherits from its parent ([ChildListener]) is not timed: the
// parent proved who it is, may make its first call when it likes, and a
// dropped inherited connection would not come back.
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
