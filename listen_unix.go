//go:build unix

package grpcipc

import (
	"context"
	"errors"
	"net"

	"github.com/grpcipc/grpcipc/internal/rights"
	"github.com/grpcipc/grpcipc/internal/sockfile"
	"golang.org/x/sys/unix"
)

func listenUnixPath(ctx context.Context, ep Endpoint, cfg listenConfig) (net.Listener, error) {
	l, err := sockfile.Listen(ctx, ep.Address, cfg.mode, cfg.gid)
	if err != nil {
		return nil, err // a *Listener nil is not a nil net.Listener
	}
	return l, nil
}

func listenAbstract(ctx context.Context, ep Endpoint) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "unix", "@"+ep.Address)
	switch {
	case errors.Is(err, unix.EADDRINUSE):
		return nil, &sockfile.InUseError{Detail: "a server is bound to that name", Cause: err}
	case err != nil:
		return nil, netReason(err)
	}
	return l, nil
}

func listenPipe(_ context.Context, ep Endpoint, _ listenConfig) (net.Listener, error) {
	return nil, unsupportedErr(ep.String(), "named pipes exist only on Windows")
}

// rightsDiscarded makes a Unix connection read with recvmsg, so that
// descriptors the peer attaches (SCM_RIGHTS) are closed off the reading
// goroutine instead of by the kernel inside the read, where closing one (a
// TCP socket with unsent data and SO_LINGER) can block for as long as the
// peer likes; the fast path keeps those its FILES frames announce.
func rightsDiscarded(c net.Conn) net.Conn {
	if uc, ok := c.(*net.UnixConn); ok {
		return rights.NewConn(uc)
	}
	return c
}
