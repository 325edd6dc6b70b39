package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc"
)

type clientConfig struct {
	ep       Endpoint
	grpcOpts []grpc.DialOption
	tls      tlsSettings
	expect   []Principal  // the server must match one (none: no check)
	identify bool         // named pipes: Identification, not Anonymous
	http2    bool         // speak HTTP/2 only
	logger   *slog.Logger // nil: slog.Default
	unary    []grpc.UnaryClientInterceptor
	stream   []grpc.StreamClientInterceptor
	// dial, when set, makes the connections instead of dialling ep (a
	// child's inherited connection).
	dial func(context.Context) (net.Conn, error)
	// connBudget: the fast-path memory budget of each connection (0: the
	// default, which grows with the calls' receive limits)
	connBudget int64
}

type clientOptionFunc func(*clientConfig) error

func (f clientOptionFunc) applyClient(c *clientConfig) error { return f(c) }

// WithExpectedServer makes [NewClient] check the server's OS identity
// before it sends a byte of a request: the process at the other end of the
// socket must match one of principals ([SameUser] is the client's own user,
// [Root] is uid 0 or, on Windows, SYSTEM; [ParsePrincipal] reads the others
// from text). On a Unix socket path the socket file's owner must match too,
// and no directory from the socket's up to / may be writable by another
// user unless it is sticky and owned by root or the expected user, so that
// the socket could not have been swapped. A mismatch fails the connection with an error
// wrapping [ErrUntrustedServer] that names the expected and the actual
// identity. Without this option a client expects [SameUser] or [Root];
// [Anyone] ("*") trusts any server and turns the socket file checks off.
func WithExpectedServer(principals ...Principal) ClientOption {
	return clientOptionFunc(func(c *clientConfig) error {
		if len(principals) == 0 {
			return fmt.Errorf("grpcipc: WithExpectedServer with no principals")
		}
		if c.ep.Transport == TCP {
			return fmt.Errorf("grpcipc: %s: a tcp server has no OS identity to check; use TLS with WithPins or a CA", c.ep)
		}
		for _, p := range principals {
			if err := checkMade(p); err != nil {
				return fmt.Errorf("grpcipc: expected server: %w", err)
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

// DefaultMaxCallRecvMsgSize is the largest message a client receives
// unless a call says otherwise ([grpc.MaxCallRecvMsgSize]): 4 MiB, as in
// grpc-go.
const DefaultMaxCallRecvMsgSize = 4 << 20

// WithHTTP2 makes [NewClient] speak HTTP/2 through a grpc.ClientConn
// ([ClientConn.GRPCClientConn]) rather than offer the fast path, for what
// only grpc.ClientConn has: service-config retries and load balancing,
// channelz, connectivity state, keepalive pings, compression.
func WithHTTP2() ClientOption {
	return clientOptionFunc(func(c *clientConfig) error {
		c.http2 = true
		return nil
	})
}

// WithUnaryClientInterceptor adds unary interceptors to a client, on both
// protocols; the first given runs first. On the fast path the interceptor's
// *grpc.ClientConn is nil.
func WithUnaryClientInterceptor(i ...grpc.UnaryClientInterceptor) ClientOption {
	return clientOptionFunc(func(c *clientConfig) error {
		for _, x := range i {
			if x == nil {
				return errors.New("grpcipc: nil unary client interceptor")
			}
		}
		c.unary = append(c.unary, i...)
		return nil
	})
}

// WithStreamClientInterceptor adds stream interceptors to a client, on
// both protocols; the first given runs first. On the fast path the
// interceptor's *grpc.ClientConn is nil.
func WithStreamClientInterceptor(i ...grpc.StreamClientInterceptor) ClientOption {
	return clientOptionFunc(func(c *clientConfig) error {
		for _, x := range i {
			if x == nil {
				return errors.New("grpcipc: nil stream client interceptor")
			}
		}
		c.stream = append(c.stream, i...)
		return nil
	})
}
