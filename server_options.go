package grpcipc

import (
	"errors"
	"fmt"
	"math"

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
// Transport credentials are an error: grpcipc's check the callers.
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

// Memory budgets of the fast path (docs/protocol.md, "Memory budgets").
const (
	// DefaultConnMemoryBudget is how much memory one fast-path connection's
	// peer can make the other side hold: messages received and not yet
	// taken by handlers (or, on a client, by the caller), messages
	// arriving in parts, and the metadata of open calls, each counted at
	// no less than what it really occupies. It grows to twice the receive
	// limit when that is larger.
	DefaultConnMemoryBudget = 64 << 20
	// DefaultCallerMemoryBudget is how much all the fast-path connections
	// of one caller (a uid) other than the server's own user and root can
	// make a server hold together. Left to its default, it grows to the
	// connection budget when that is larger.
	DefaultCallerMemoryBudget = 256 << 20
)

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

// budgetFloor is the least budget that holds one message of max bytes
// arriving in parts, and a frame besides.
func budgetFloor(max int) int64 {
	return int64(max) + int64(max)/8 + 2<<20
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
