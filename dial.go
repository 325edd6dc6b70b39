package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/grpcipc/grpcipc/internal/sockfile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Dial connects to a local endpoint (see [ParseEndpoint]) and returns the
// raw connection. It is the dialer [NewClient] uses; call it yourself to
// build a [grpc.ClientConn] with your own options:
//
//	creds, err := grpcipc.ClientCredentials("unix:///run/app/app.sock")
//	conn, err := grpc.NewClient("passthrough:///unix:///run/app/app.sock",
//		grpc.WithContextDialer(grpcipc.Dial),
//		grpc.WithTransportCredentials(creds))
//
// With the passthrough resolver, grpc-go hands Dial the endpoint string that
// follows "passthrough:///".
//
// Its error is an [*EndpointError] for a string that is no endpoint, or
// begins "grpcipc: connecting to ENDPOINT: " and gives the OS's reason,
// which errors.Is matches (fs.ErrNotExist, syscall.ECONNREFUSED, ...).
func Dial(ctx context.Context, endpoint string) (net.Conn, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	c, err := dialEndpoint(ctx, ep, false)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: connecting to %s: %w", ep, err)
	}
	return c, nil
}

// dialEndpoint connects to ep; identify raises a named pipe's impersonation
// level to Identification. Its error is the reason alone, without the
// operation and the endpoint, which its callers name.
func dialEndpoint(ctx context.Context, ep Endpoint, identify bool) (net.Conn, error) {
	c, err := dialEndpointOS(ctx, ep, identify)
	if err != nil {
		return nil, netReason(err)
	}
	return c, nil
}

func dialEndpointOS(ctx context.Context, ep Endpoint, identify bool) (net.Conn, error) {
	var d net.Dialer
	switch ep.Transport {
	case Unix, UnixAbstract:
		addr := ep.Address
		if ep.Transport == UnixAbstract {
			addr = "@" + addr
		}
		// A full accept queue (EAGAIN: the server is slow to accept, or
		// another user floods it) is worth retrying until ctx ends.
		for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
			c, err := d.DialContext(ctx, "unix", addr)
			if err == nil {
				tuneSocket(c)
				return c, nil
			}
			if !sockfile.IsBusy(err) {
				return nil, err
			}
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(wait):
			}
		}
	case NamedPipe:
		return dialPipe(ctx, ep, identify)
	case TCP:
		return d.DialContext(ctx, "tcp", ep.Address)
	}
	return nil, fmt.Errorf("%w: unknown transport %q", ErrInvalidEndpoint, ep.Transport)
}

// newGRPCClient makes the grpc.ClientConn that speaks HTTP/2 for a
// ClientConn; its dialer first asks take (if not nil) for a connection
// made already.
func newGRPCClient(ep Endpoint, cfg *clientConfig, creds *transportCreds, denied *atomic.Pointer[error], take func() net.Conn) (*grpc.ClientConn, error) {
	dopts := append(localDialOptions(), grpc.WithTransportCredentials(creds))
	var target string
	if ep.Transport == TCP {
		target = "dns:///" + ep.Address
	} else {
		target = (&url.URL{Scheme: "passthrough", Path: "/" + ep.String()}).String()
		dopts = append(dopts,
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				if take != nil {
					if c := take(); c != nil {
						return c, nil
					}
				}
				c, err := cfg.connect(ctx)
				switch {
				case err != nil && sockfile.IsAccessDenied(err):
					err = accessDeniedError(ep, err)
					denied.Store(&err)
					return nil, err
				case err != nil:
					denied.Store(nil)
					return nil, fmt.Errorf("grpcipc: connecting to %s: %w", ep, err)
				}
				denied.Store(nil)
				return c, nil
			}),
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return refineDialError(invoker(ctx, method, req, reply, cc, opts...), denied)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				s, err := streamer(ctx, desc, cc, method, opts...)
				return s, refineDialError(err, denied)
			}),
			// What grpc-go sends for its own unix: targets.
			grpc.WithAuthority("localhost"))
	}
	return grpc.NewClient(target, append(dopts, cfg.grpcOpts...)...)
}

// ClientCredentials returns the transport credentials [NewClient] uses for
// endpoint with opts ([WithExpectedServer], [WithTLS], [WithPins]; the
// default expectation included), for a [grpc.ClientConn] of your own:
//
//	creds, err := grpcipc.ClientCredentials("unix:///run/myd/myd.sock")
//	conn, err := grpc.NewClient("passthrough:///unix:///run/myd/myd.sock",
//		grpc.WithContextDialer(grpcipc.Dial), grpc.WithTransportCredentials(creds))
//
// They check the server's identity, and for a socket path its file and
// directories, in the handshake, before a byte of a request is sent.
func ClientCredentials(endpoint string, opts ...ClientOption) (credentials.TransportCredentials, error) {
	_, cfg, creds, err := clientSetup(endpoint, opts)
	if err != nil {
		return nil, err
	}
	if len(cfg.grpcOpts) > 0 {
		return nil, errors.New("grpcipc: ClientCredentials: WithGRPCDialOptions does not apply; pass those options to grpc.NewClient")
	}
	return creds, nil
}

// defaultExpected is who a client trusts as the server when not told.
var defaultExpected = []Principal{{kind: pSameUser, text: "same-user"}, {kind: pSystem, text: "root"}}

// clientSetup applies opts and builds the client's transport credentials.
func clientSetup(endpoint string, opts []ClientOption) (Endpoint, clientConfig, *transportCreds, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return Endpoint{}, clientConfig{}, nil, err
	}
	cfg, creds, err := clientSetupEndpoint(ep, opts)
	if err != nil {
		return Endpoint{}, clientConfig{}, nil, err
	}
	return ep, cfg, creds, nil
}

// clientSetupEndpoint is clientSetup for a parsed endpoint.
func clientSetupEndpoint(ep Endpoint, opts []ClientOption) (clientConfig, *transportCreds, error) {
	var err error
	cfg := clientConfig{ep: ep}
	for _, o := range opts {
		if o == nil {
			return clientConfig{}, nil, errors.New("grpcipc: nil ClientOption")
		}
		if err := o.applyClient(&cfg); err != nil {
			return clientConfig{}, nil, err
		}
	}
	if len(cfg.expect) == 0 && ep.Transport != TCP {
		cfg.expect = defaultExpected
	}
	creds := &transportCreds{ep: ep, expect: cfg.expect}
	if cfg.tls.enabled() {
		if creds.tls, err = cfg.tls.credentials(false); err != nil {
			return clientConfig{}, nil, err
		}
	}
	if len(cfg.expect) > 0 {
		if creds.self, err = selfIdentity(); err != nil {
			return clientConfig{}, nil, fmt.Errorf("grpcipc: %s: reading this process's identity, to check the server's: %w", ep, err)
		}
	}
	return cfg, creds, nil
}

// connect makes a new connection to the server: cfg.dial's, or one to the
// endpoint. Its error is the reason alone (see dialEndpoint).
func (cfg *clientConfig) connect(ctx context.Context) (net.Conn, error) {
	if cfg.dial != nil {
		return cfg.dial(ctx)
	}
	return dialEndpoint(ctx, cfg.ep, cfg.identify)
}

// checkNoTransportCredentials refuses dial options that set transport
// credentials: grpc-go tells only by refusing a client that has none.
func checkNoTransportCredentials(opts []grpc.DialOption) error {
	if len(opts) == 0 {
		return nil
	}
	probe, err := grpc.NewClient("passthrough:///probe", opts...)
	if err != nil {
		return nil // none set (or another problem, which NewClient reports)
	}
	probe.Close()
	return errors.New("grpcipc: WithGRPCDialOptions sets transport credentials, which would replace grpcipc's check of the server: " +
		"use WithTLS or WithPins for TLS, or build your own grpc.ClientConn with grpcipc.ClientCredentials and grpcipc.Dial")
}

// accessDeniedError says that the socket's permissions refuse this user.
func accessDeniedError(ep Endpoint, err error) error {
	return fmt.Errorf("grpcipc: %w: %s: %s refuses this process's user (%s); the server sets its socket's permissions from its policy (WithPolicy), so its operator admits users there: %w",
		ErrPermissionDenied, ep, describeAccess(ep), describeSelf(), err)
}

// refineDialError turns the UNAVAILABLE of a call that failed because the
// socket refused this user into PERMISSION_DENIED.
func refineDialError(err error, denied *atomic.Pointer[error]) error {
	if err == nil || status.Code(err) != codes.Unavailable {
		return err
	}
	if d := denied.Load(); d != nil {
		return status.Error(codes.PermissionDenied, (*d).Error())
	}
	return err
}
