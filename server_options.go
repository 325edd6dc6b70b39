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
