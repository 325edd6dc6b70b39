package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// AuthInfo is what grpcipc's transport credentials learnt of a connection:
// its transport and the OS identity of the process at the other end. On the
// server, handlers get it with [AuthInfoFromContext]; on the client,
// [AuthInfoFromPeer] reads it from a [peer.Peer] filled by [grpc.Peer].
type AuthInfo struct {
	credentials.CommonAuthInfo
	// Transport is the connection's transport.
	Transport Transport
	// Endpoint is where the connection was made: on a server, the endpoint
	// it serves (as Listen was given it, or as the listener's address
	// tells); on a client, the endpoint it dialled.
	Endpoint Endpoint
	// Peer is the OS identity of the process at the other end, read once
	// when the connection was made; nil where the OS gives none (tcp).
	Peer *Creds
	// TLS is the TLS state when the connection runs TLS ([WithTLS],
	// [WithPins]): the peer's certificates are in TLS.State.
	TLS *credentials.TLSInfo

	adm     *admission // the policy of the server that accepted the connection
	refused bool       // the policy admits this caller to no method
}

// AuthType implements [credentials.AuthInfo].
func (*AuthInfo) AuthType() string { return "grpcipc" }

// AuthInfoFromContext returns the AuthInfo of the connection a call came in
// on, in a handler or interceptor of a server made with [ServerOptions].
func AuthInfoFromContext(ctx context.Context) (*AuthInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	return AuthInfoFromPeer(p)
}

// AuthInfoFromPeer returns the AuthInfo of a connection's peer.
func AuthInfoFromPeer(p *peer.Peer) (*AuthInfo, bool) {
	if p == nil {
		return nil, false
	}
	ai, ok := p.AuthInfo.(*AuthInfo)
	return ai, ok
}

// transportCreds reads the OS identity of the peer once per connection,
// during gRPC's handshake, checks it where the client asked to, and then
// runs TLS if configured. Without TLS it adds no encryption: a local socket
// never leaves the machine, so its security level is PrivacyAndIntegrity,
// as grpc-go's local credentials say; a tcp connection without TLS is
// accepted only on loopback, at NoSecurity.
type transportCreds struct {
	ep     Endpoint // the client's endpoint; zero on the server
	tls    credentials.TransportCredentials
	expect []Principal // the client's expectation of the server
	self   identity
	// clientAuth: the server's TLS requires and verifies client
	// certificates (a CA or pins).
	clientAuth bool
	// admissions: a server made with ServerOptions admits connections
	// of listeners it did not wrap itself here, one per local address.
	admissions *admissions
}

// ClientHandshake checks the server (see [WithExpectedServer]) and runs TLS
// if configured. Its error is a [*ServerIdentityError], or begins
// "grpcipc: handshake with ENDPOINT: ".
func (c *transportCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tconn, ai, err := c.clientHandshake(ctx, authority, conn)
	if err != nil {
		if _, ok := err.(*ServerIdentityError); !ok {
			err = fmt.Errorf("grpcipc: handshake with %s: %w", c.ep, err)
		}
		return nil, nil, err // a ServerIdentityError names the endpoint
	}
	return tconn, ai, nil
}

func (c *transportCreds) clientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if h, ok := conn.(*handoffConn); ok && h.ai != nil {
		return conn, h.ai, nil // checked when it was made
	}
	if len(c.expect) > 0 && c.ep.Transport == Unix && !slices.ContainsFunc(c.expect, func(p Principal) bool { return p.kind == pAny }) {
		// The socket file and the directories above it must be the
		// expected server's, or someone else could have swapped it.
		if err := checkSocketPath(c.ep, c.expect, c.self); err != nil {
			return nil, nil, err
		}
	}
	ai, err := handshakeInfo(conn, c.ep.Transport, c.tls != nil, false, slices.ContainsFunc(c.expect, namesCgroup))
	if err != nil {
		return nil, nil, err
	}
	if len(c.expect) > 0 {
		if err := checkServer(c.ep, ai.Peer, c.expect, c.self); err != nil {
			return nil, nil, err
		}
	}
	return c.finish(ctx, authority, conn, ai, false)
}

func (c *transportCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var pc *admittedConn
	switch v := conn.(type) {
	case *admittedConn:
		pc = v
	case *refusedConn:
		pc = v.admittedConn
	case *unservedConn:
		conn = v.Conn
	}
	if pc == nil && c.admissions != nil {
		// A plain grpc.Server made with ServerOptions: this handshake is
		// where its callers are checked, by the code NewServer's Serve runs.
		g, err := c.admissions.of(conn)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		if pc = g.admit(conn); pc == nil {
			// Refused and closed, or over the caller's limit: logged.
			return nil, nil, credentials.ErrConnDispatched
		}
		if pc.refused {
			// A grpcipc client offers the fast path first: it hears its
			// refusal there, on this one connection (a plain grpc.Server
			// speaks no other fast path). Others hear it over HTTP/2.
			if !answerRefused(pc) {
				pc.Close()
				return nil, nil, credentials.ErrConnDispatched
			}
		}
		conn = pc
	}
	if pc != nil && pc.adm.tcp {
		return c.tcpHandshake(pc, conn)
	}
	if pc != nil {
		pc.handshaken.Store(true)
		pc.encrypted = c.tls != nil
		ai := &AuthInfo{
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
			Transport:      pc.adm.ep.Transport, Peer: pc.creds, adm: pc.adm, refused: pc.refused,
		}
		return c.finish(context.Background(), "", conn, ai, true)
	}
	// The refusal server's connections, and those of a grpc.Server given
	// these credentials some other way: identity only, and over tcp, which
	// has none, client certificates.
	if conn.RemoteAddr().Network() == "tcp" && !c.clientAuth {
		return nil, nil, errTCPNeedsAuth
	}
	ai, err := handshakeInfo(conn, "", c.tls != nil, true, c.admissions != nil && c.admissions.cfg.policy.namesCgroup())
	if err != nil {
		return nil, nil, fmt.Errorf("grpcipc: refusing a connection: %w", err)
	}
	return c.finish(context.Background(), "", conn, ai, true)
}

// tcpHandshake admits a connection from a tcp Listen listener: over TLS
// with client certificates required, or, with WithUnauthenticatedTCP,
// anyone (only from loopback without TLS).
func (c *transportCreds) tcpHandshake(pc *admittedConn, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	g := pc.adm
	pc.handshaken.Store(true)
	pc.encrypted = c.tls != nil
	if !c.clientAuth && !g.tcpOpen {
		if ok, _ := g.logOK("tcp"); ok {
			g.log.Error(errTCPNeedsAuth.Error(), "endpoint", g.ep.String(), "remote", conn.RemoteAddr().String())
		}
		return nil, nil, errTCPNeedsAuth
	}
	if c.tls == nil {
		if _, err := handshakeInfo(conn, TCP, false, true, false); err != nil {
			if ok, _ := g.logOK("tcp"); ok {
				g.log.Warn("grpcipc: connection refused: "+err.Error(), "endpoint", g.ep.String())
			}
			return nil, nil, fmt.Errorf("grpcipc: refusing a connection: %w", err) // not loopback
		}
	}
	ai := &AuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, Transport: TCP, adm: g}
	return c.finish(context.Background(), "", conn, ai, true)
}

// finish runs TLS, if configured, over the checked connection.
func (c *transportCreds) finish(ctx context.Context, authority string, conn net.Conn, ai *AuthInfo, server bool) (net.Conn, credentials.AuthInfo, error) {
	pc, fromGuard := conn.(*admittedConn)
	if ai.Endpoint.Transport == "" {
		switch {
		case !server:
			ai.Endpoint = c.ep
		case fromGuard:
			ai.Endpoint = pc.adm.ep
		default:
			ai.Endpoint = endpointOfAddr(conn.LocalAddr())
		}
	}
	if c.tls != nil {
		var (
			tconn net.Conn
			tai   credentials.AuthInfo
			err   error
		)
		if server {
			tconn, tai, err = c.tls.ServerHandshake(conn)
		} else {
			tconn, tai, err = c.tls.ClientHandshake(ctx, authority, conn)
		}
		if err != nil {
			if fromGuard {
				// TLS 1.3 tells the client of a refused certificate only
				// at its first read: say here who was refused and why.
				if ok, skipped := pc.adm.logOK(pc.logKey()); ok {
					attrs := []any{"endpoint", pc.adm.ep.String(), "caller", pc.creds.String(), "err", err}
					if skipped > 0 {
						attrs = append(attrs, "lines_not_logged", skipped)
					}
					pc.adm.log.Warn("grpcipc: TLS handshake failed", attrs...)
				}
			}
			return nil, nil, err
		}
		if info, ok := tai.(credentials.TLSInfo); ok {
			ai.TLS = &info
			ai.SecurityLevel = info.SecurityLevel
		}
		conn = tconn
	}
	return conn, ai, nil
}

// handshakeInfo reads what the connection's transport tells of the peer;
// server says which end this is. Its error is the reason alone: the
// handshakes say what was done.
func handshakeInfo(conn net.Conn, transport Transport, withTLS, server, cgroup bool) (*AuthInfo, error) {
	addr := conn.RemoteAddr()
	if addr == nil {
		return nil, errors.New("the connection has no peer address (not connected)")
	}
	switch addr.Network() {
	case "unix", "pipe":
		if transport == "" {
			transport = Unix
			if addr.Network() == "pipe" {
				transport = NamedPipe
			}
		}
		creds, err := readPeerCreds(conn, server, nil, cgroup)
		if err != nil {
			creds = nil // the OS said nothing; principals other than "*" will not match
		}
		return &AuthInfo{
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
			Transport:      transport, Peer: creds,
		}, nil
	case "tcp":
		if !withTLS {
			host, _, err := net.SplitHostPort(addr.String())
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("tcp peer %s: not a loopback address (use TLS to reach another machine)", addr)
			}
		}
		return &AuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, Transport: TCP}, nil
	}
	return nil, fmt.Errorf("no transport credentials for %s connections", addr.Network())
}

func (c *transportCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "grpcipc"}
}

func (c *transportCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

// OverrideServerName is deprecated in grpc-go and does nothing here.
func (c *transportCreds) OverrideServerName(string) error { return nil }

// ServerOptions returns [grpc.Server] options that check callers as
// [NewServer] does, for a plain grpc.Server (HTTP/2 only, no fast path):
// transport credentials that read each connection's OS identity when it
// is accepted and apply the [Policy] ([WithPolicy]; [SameUserPolicy] by
// default) on any listener the server is given, and interceptors that
// apply its per-method rules to every call, so that a refused caller gets
// codes.PermissionDenied and no handler runs. Handlers read the caller's
// identity with [AuthInfoFromContext]. [WithTLS] and [WithPins] add TLS on
// top of the identity check. Interceptors, stats handlers and limits given
// as options apply too; grpc-go options of your own go after these, but
// transport credentials among them are replaced by grpcipc's. Its errors
// are [NewServer]'s.
func ServerOptions(opts ...ServerOption) ([]grpc.ServerOption, error) {
	cfg, err := newServerConfig(opts)
	if err != nil {
		return nil, err
	}
	creds, err := newServerCreds(&cfg)
	if err != nil {
		return nil, err
	}
	if err := checkGRPCOptions(cfg.grpcOpts); err != nil {
		return nil, err
	}
	creds.admissions = &admissions{cfg: &cfg}
	return append(append(localServerOptions(),
		grpc.UnknownServiceHandler(unknownService)),
		append(cfg.grpcOptions(),
			grpc.Creds(creds),
			grpc.ConnectionTimeout(cfg.handshakeTimeout))...), nil
}

// newServerCreds makes a server's transport credentials.
func newServerCreds(cfg *serverConfig) (*transportCreds, error) {
	creds := &transportCreds{}
	if cfg.tls.enabled() {
		var err error
		if creds.tls, err = cfg.tls.credentials(true); err != nil {
			return nil, err
		}
		creds.clientAuth = cfg.tls.requiresClientCert()
	}
	return creds, nil
}

// unknownService answers a call of a method the server does not have:
// UNIMPLEMENTED as grpc-go says it, unless the caller is refused, who
// learns nothing of the server's methods.
func unknownService(_ any, ss grpc.ServerStream) error {
	ctx := ss.Context()
	method, _ := grpc.Method(ctx)
	if err := authorizeCall(ctx, method); err != nil {
		return err
	}
	return unimplemented(method)
}

// unimplemented is grpc-go's error for a method it does not know.
func unimplemented(method string) error {
	svc, m, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	return status.Errorf(codes.Unimplemented, "unknown method %v for service %v", m, svc)
}
