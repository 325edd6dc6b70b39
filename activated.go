package grpcipc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/grpcipc/grpcipc/internal/inherit"
)

// ErrNotActivated is the error of [ActivatedListeners] in a process that
// systemd did not start with sockets (LISTEN_PID and LISTEN_FDS unset, or
// naming another process).
var ErrNotActivated = errors.New("grpcipc: no sockets were handed to this process by systemd (socket activation: LISTEN_PID, LISTEN_FDS)")

var activatedMu sync.Mutex

// ActivatedListeners returns the listening sockets systemd handed to this
// process (socket activation: LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES,
// read through go-systemd's activation package, which then removes them
// from the environment). Serve each with a [Server]: identity and policy
// are checked on their connections as on any listener's. The socket file
// (path, mode, owner) is the unit's: closing a listener leaves it.
//
// Each socket must be a listening Unix stream socket (ListenStream= with
// a path, or an @abstract name), or the error names the descriptor and
// what it is. Given the server's policy (WithPolicy; the default admits the
// same user only), a socket file whose mode lets in more users than the
// policy admits, or an abstract socket (which has no file mode) under a
// policy that admits only the server's user, is logged as a warning
// (slog.Default): those users reach the accept queue, and are refused
// there; SocketMode=0600 (or 0660 and SocketGroup= for a group) keeps them
// out.
func ActivatedListeners(opts ...ListenOption) ([]net.Listener, error) {
	activatedMu.Lock() // the descriptors are taken once: a second call finds none
	defer activatedMu.Unlock()
	cfg := listenConfig{gid: -1}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("grpcipc: activated sockets: nil ListenOption")
		}
		if err := o.applyListen(&cfg); err != nil {
			return nil, fmt.Errorf("grpcipc: activated sockets: %w", err)
		}
	}
	if cfg.policy == nil {
		cfg.policy = SameUserPolicy()
	}
	if err := inherit.CheckActivatedFDs(); err != nil {
		return nil, fmt.Errorf("grpcipc: %w", err)
	}
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, ErrNotActivated
	}
	var out []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range out {
			l.Close()
		}
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	for i, f := range files {
		fd := 3 + i // SD_LISTEN_FDS_START
		if !inherit.IsListening(f) {
			return fail(fmt.Errorf("grpcipc: activated socket %d (%s) is not a listening stream socket (a datagram socket, a connection, or a socket never listened on); grpcipc serves ListenStream= sockets", fd, f.Name()))
		}
		l, err := net.FileListener(f) // a duplicate
		if err != nil {
			return fail(fmt.Errorf("grpcipc: activated socket %d (%s): not a listening stream socket: %w", fd, f.Name(), err))
		}
		ul, ok := l.(*net.UnixListener)
		if !ok || l.Addr().Network() != "unix" {
			l.Close()
			return fail(fmt.Errorf("grpcipc: activated socket %d (%s) is a %s socket at %s; grpcipc serves activated Unix stream sockets (ListenStream=/path or @name)",
				fd, f.Name(), l.Addr().Network(), l.Addr()))
		}
		ul.SetUnlinkOnClose(false) // the unit's socket, not ours to remove
		ep := endpointOfAddr(ul.Addr())
		if warn := activatedModeWarning(ep, cfg.policy); warn != "" {
			slog.Default().Warn("grpcipc: "+warn, "endpoint", ep.String(), "socket", f.Name())
		}
		out = append(out, &activatedListener{UnixListener: ul, ep: ep})
	}
	for _, f := range files {
		f.Close()
	}
	return out, nil
}

// activatedListener is a socket systemd handed over, with its endpoint.
type activatedListener struct {
	*net.UnixListener
	ep Endpoint
}

func (l *activatedListener) endpoint() Endpoint { return l.ep }

// activatedModeWarning says what is wrong with an activated socket's
// permissions for policy, or "".
func activatedModeWarning(ep Endpoint, policy *Policy) string {
	self, err := selfIdentity()
	if err != nil {
		return ""
	}
	want, _ := policy.socketAccess(self)
	if ep.Transport == UnixAbstract {
		if want == 0o600 {
			return "an abstract socket has no file permissions: every local user reaches its accept queue, and the policy refuses them there (a socket path with SocketMode=0600 keeps them out)"
		}
		return ""
	}
	fi, err := os.Stat(ep.Address)
	if err != nil {
		return ""
	}
	if extra := fi.Mode().Perm() &^ want; extra&0o022 != 0 {
		return fmt.Sprintf("the activated socket file has mode %04o, which lets users the policy refuses connect (they are refused after accept); set SocketMode=%04o in the .socket unit", fi.Mode().Perm(), want)
	}
	return ""
}
