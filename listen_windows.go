package grpcipc

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"

	"github.com/grpcipc/grpcipc/internal/sockfile"
)

// listenUnixPath serves an AF_UNIX socket on Windows 10 and later, in a
// directory whose DACL admits this user alone, the file's own DACL from the
// policy (see [sockfile.ListenACL]).
func listenUnixPath(ctx context.Context, ep Endpoint, cfg listenConfig) (net.Listener, error) {
	path := filepath.FromSlash(ep.Address)
	if cfg.modeSet {
		return nil, errors.New("a socket file mode has no meaning on Windows; admit callers with WithPolicy")
	}
	sddl, err := socketFileSDDL(cfg.policy, cfg.self)
	if err != nil {
		return nil, err
	}
	l, err := sockfile.ListenACL(ctx, path, cfg.self.sid, sddl)
	if err != nil {
		return nil, err // a *Listener nil is not a nil net.Listener
	}
	return l, nil
}

// socketFileSDDL is the socket file's DACL: full control for this user and
// SYSTEM, and read/write (which connecting needs) for whom else the policy
// admits, as pipeSDDL decides them.
func socketFileSDDL(p *Policy, self identity) (string, error) {
	pipe, err := pipeSDDL(p, self)
	if err != nil {
		return "", err
	}
	return strings.Replace(pipe, "(D;;GA;;;NU)", "(A;;FA;;;SY)", 1), nil
}

func listenAbstract(_ context.Context, ep Endpoint) (net.Listener, error) {
	return nil, unsupportedErr(ep.String(), "abstract sockets exist only on Linux")
}

// rightsDiscarded: named pipes and Windows AF_UNIX sockets carry no
// descriptors.
func rightsDiscarded(c net.Conn) net.Conn { return c }
