package grpcipc

import (
	"context"
	"net"
	"net/url"
	"time"

	"google.golang.org/grpc"
)

// Dial connects to a local endpoint (see [ParseEndpoint]) and returns the
// raw connection. It is the dialer [NewClient] uses; call it yourself to
// build a [grpc.ClientConn] with your own options:
//
//	conn, err := grpc.NewClient("passthrough:///unix:///run/app/app.sock",
//		grpc.WithContextDialer(grpcipc.Dial),
//		grpc.WithTransportCredentials(local.NewCredentials()))
//
// With the passthrough resolver, grpc-go hands Dial the endpoint string that
// follows "passthrough:///".
func Dial(ctx context.Context, endpoint string) (net.Conn, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	return dialEndpoint(ctx, ep, false)
}

// dialEndpoint connects to ep; identify raises a named pipe's impersonation
// level to Identification.
func dialEndpoint(ctx context.Context, ep Endpoint, identify bool) (net.Conn, error) {
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
			if !isBusy(err) {
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
	return nil, endpointErr(ep.String(), "unknown transport %q", ep.Transport)
}

// NewClient returns a [grpc.ClientConn] for the endpoint (see
// [ParseEndpoint]), made by [grpc.NewClient]: like it, NewClient does no I/O
// and connects on the first call or on [grpc.ClientConn.Connect].
// Connectivity state, health checking, retries, keepalive and reflection work
// as they do over TCP.
//
// Connections use grpcipc's transport credentials: no TLS, the server's OS
// identity read when connecting ([AuthInfoFromPeer] with [grpc.Peer]), and
// a security level of PrivacyAndIntegrity over a local socket, so per-RPC
// credentials that require a secure channel may be sent; for a tcp endpoint
// they admit only loopback addresses. To reach another machine, pass TLS
// credentials with [WithGRPCDialOptions]; a tcp endpoint is then resolved by
// grpc-go's own DNS resolver.
func NewClient(endpoint string, opts ...ClientOption) (*grpc.ClientConn, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	cfg := clientConfig{ep: ep}
	for _, o := range opts {
		if err := o.applyClient(&cfg); err != nil {
			return nil, err
		}
	}
	creds := &transportCreds{ep: ep, expect: cfg.expect}
	if cfg.tls.enabled() {
		if creds.tls, err = cfg.tls.credentials(false); err != nil {
			return nil, err
		}
	}
	if len(cfg.expect) > 0 {
		if creds.self, err = selfIdentity(); err != nil {
			return nil, err
		}
	}
	dopts := append(localDialOptions(), grpc.WithTransportCredentials(creds))
	var target string
	if ep.Transport == TCP {
		target = "dns:///" + ep.Address
	} else {
		target = (&url.URL{Scheme: "passthrough", Path: "/" + ep.String()}).String()
		dopts = append(dopts,
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				if len(cfg.expect) > 0 && ep.Transport == Unix {
					// Before connecting: the file and the directories
					// above it must be the expected server's.
					if err := checkSocketPath(ep, cfg.expect, creds.self); err != nil {
						return nil, err
					}
				}
				return dialEndpoint(ctx, ep, cfg.identify)
			}),
			// What grpc-go sends for its own unix: targets.
			grpc.WithAuthority("localhost"))
	}
	return grpc.NewClient(target, append(dopts, cfg.grpcOpts...)...)
}
