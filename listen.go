package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
)

// Listen announces on a local endpoint (see [ParseEndpoint] for the syntax)
// and returns a listener to pass to [Server.Serve], or to the Serve of a
// grpc.Server made with [ServerOptions]. Listen makes the socket; the
// server checks who connects. The listener's connections are served only
// by one of those two: any other server (a grpc.Server made without
// [ServerOptions], say) has them closed at its first read, and logged, so
// that no forgotten option leaves callers unchecked.
//
// For a Unix socket path, Listen never lets a connection in with looser
// permissions than asked: it creates the socket, binds it, sets the file's
// mode ([DefaultSocketMode] unless [WithSocketMode] or [WithPolicy] says
// otherwise) and only then listens. What already stands at the path
// decides what happens:
//
//   - a socket a live server accepts on: an error wrapping [ErrAddressInUse]
//     that names the path; the file is left alone;
//   - a stale socket (nothing accepts on it): it is removed, then bound;
//   - a regular file, a directory, a symbolic link or anything else: an error
//     wrapping [ErrNotSocket]; it is left alone.
//
// The socket's directory is created when missing, with the search
// permission the socket's mode needs and no more: 0700 for a 0600 socket,
// 0710 and the socket's group for a 0660 one (given that group before anyone
// can enter it), 0711 when others may connect. An existing directory is left
// as it is, so it must let in those the socket admits. That directory, and
// every directory above it, must be owned by the current user or root and
// not writable by group or others unless it is sticky (as /tmp is); the
// socket's directory must not be a symbolic link, and a link above it (as
// /var/run on Debian, /tmp on macOS) must be owned by the current user or
// root, what it points to being checked in turn. Otherwise another user
// could replace the socket, and Listen fails with [ErrUnsafeDirectory],
// leaving the path alone.
//
// Closing the listener removes the socket file if it is still the one Listen
// bound, and the directory if Listen created it and it is empty.
//
// An abstract socket (Linux) has no file and no permissions: any local
// process may connect, so admit callers by their identity.
//
// A tcp endpoint carries no OS identity: the server serves it only to
// callers that authenticate with a TLS client certificate ([WithTLS] whose
// tls.Config sets ClientAuth to tls.RequireAndVerifyClientCert, or
// [WithPins]), unless given [WithUnauthenticatedTCP].
//
// Windows: a named pipe is created exclusively (a name another process holds
// is refused with [ErrAddressInUse]), refuses remote clients, and has a
// DACL for the server's user alone, or for those the policy admits. An
// AF_UNIX socket path (Windows 10+) needs a directory whose DACL admits no
// one else, which Listen creates when missing; [WithSocketMode] does not
// apply there.
//
// Its error begins "grpcipc: listen ENDPOINT: " and says why; an endpoint
// that cannot be listened on at all is an [*EndpointError], returned as it
// is.
func Listen(ctx context.Context, endpoint string, opts ...ListenOption) (net.Listener, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	l, err := listen(ctx, ep, opts)
	if err != nil {
		if _, ok := err.(*EndpointError); ok {
			return nil, err // it names the endpoint
		}
		return nil, fmt.Errorf("grpcipc: listen %s: %w", ep, err)
	}
	return l, nil
}

// listen is Listen for a parsed endpoint; its errors say why, Listen
// what was done.
func listen(ctx context.Context, ep Endpoint, opts []ListenOption) (net.Listener, error) {
	cfg := listenConfig{ep: ep, mode: DefaultSocketMode}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("nil ListenOption")
		}
		if err := o.applyListen(&cfg); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ep.Transport == TCP {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", ep.Address)
		if err != nil {
			return nil, netReason(err)
		}
		ep.Address = l.Addr().String() // the port chosen for :0
		return &listener{Listener: l, ep: ep}, nil
	}
	self, err := selfIdentity()
	if err != nil {
		return nil, err
	}
	explicit := cfg.policy
	if cfg.policy == nil {
		cfg.policy = SameUserPolicy()
	}
	cfg.gid = -1
	cfg.self = self
	if !cfg.modeSet {
		cfg.mode, cfg.gid = cfg.policy.socketAccess(self)
	}
	var l net.Listener
	switch ep.Transport {
	case Unix:
		l, err = listenUnixPath(ctx, ep, cfg)
	case UnixAbstract:
		l, err = listenAbstract(ctx, ep)
	case NamedPipe:
		l, err = listenPipe(ctx, ep, cfg)
	default:
		err = endpointErr(ep.String(), "unknown transport %q", ep.Transport)
	}
	if err != nil {
		return nil, err
	}
	return &listener{Listener: l, ep: ep, policy: explicit, modeSet: cfg.modeSet, self: self}, nil
}

// listener is what Listen returns: its connections are served only by a
// grpcipc server, which unwraps them; any other reader gets them closed.
type listener struct {
	net.Listener
	ep      Endpoint
	warned  atomic.Bool
	policy  *Policy  // given to Listen, or nil
	modeSet bool     // WithSocketMode was given
	self    identity // the user that listens
}

// Accept returns the next connection, for a grpcipc server.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &unservedConn{Conn: c, l: l}, nil
}

// errUnserved is what a connection of a Listen listener reads when the
// server reading it is not grpcipc's.
var errUnserved = errors.New("grpcipc: a grpcipc.Listen listener's connections are served only by grpcipc.NewServer, or a grpc.Server made with grpcipc.ServerOptions, which check who connects; closing the connection")

// unservedConn is a Listen listener's connection before a grpcipc server
// took it.
type unservedConn struct {
	net.Conn
	l *listener
}

func (c *unservedConn) Read([]byte) (int, error) {
	if !c.l.warned.Swap(true) {
		slog.Error(errUnserved.Error(), "endpoint", c.l.ep.String())
	}
	c.Conn.Close()
	return 0, errUnserved
}
