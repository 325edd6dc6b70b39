package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/grpcipc/grpcipc/internal/inherit"
)

// The child's side of StartChild: the connections a parent handed this
// process (ChildListener serves the parent, ParentConn calls it), the
// Inherited transport's listeners and their addresses.

// ErrNotChild is the error of [ChildListener] and [ParentConn] in a process
// that [StartChild] did not start.
var ErrNotChild = errors.New("grpcipc: this process was not started by grpcipc.StartChild (GRPCIPC_CHILD is not set)")

// inheritedConn is a connection handed from parent to child, with the
// identity of the process at the other end as it was established when the
// connection was made (the kernel's record of a socket pair names its
// creator on both ends).
type inheritedConn struct {
	net.Conn
	peer *Creds
}

// NetConn returns the connection under it: on Unix, what carries the
// fast path's descriptors.
func (c *inheritedConn) NetConn() net.Conn { return c.Conn }

// oneConnListener yields one connection, then waits until it is closed
// and fails: a server of an inherited connection ends with it.
type oneConnListener struct {
	ep     Endpoint
	mu     sync.Mutex
	conn   net.Conn      // not yet accepted
	given  net.Conn      // accepted: closed with the listener, as no one else may hold it
	gone   chan struct{} // closed when the connection or the listener is closed
	once   sync.Once
	closed bool
}

func newOneConnListener(c net.Conn, ep Endpoint) *oneConnListener {
	l := &oneConnListener{ep: ep, gone: make(chan struct{})}
	l.conn = &watchedConn{Conn: c, l: l}
	l.given = l.conn
	return l
}

// watchedConn tells its listener when it closes.
type watchedConn struct {
	net.Conn
	l *oneConnListener
}

func (w *watchedConn) Close() error {
	err := w.Conn.Close()
	w.l.end()
	return err
}

// unwrap gives readPeerCreds the connection with its identity.
func (w *watchedConn) unwrap() net.Conn { return w.Conn }

// NetConn returns the connection under it (for the fast path's
// descriptors).
func (w *watchedConn) NetConn() net.Conn { return w.Conn }

func (l *oneConnListener) end() { l.once.Do(func() { close(l.gone) }) }

// ErrPeerGone is the error of an inherited connection's listener
// ([ChildListener]) once that connection has closed: Serve returns it when
// the other process closed the connection or died. It wraps net.ErrClosed.
var ErrPeerGone = fmt.Errorf("grpcipc: the inherited connection is closed: %w", net.ErrClosed)

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	closed := l.closed
	l.mu.Unlock()
	if c != nil && !closed {
		return c, nil
	}
	<-l.gone
	return nil, ErrPeerGone
}

// Close closes the listener and its connection, served or not: closing
// the listener of an inherited connection ends it.
func (l *oneConnListener) Close() error {
	l.mu.Lock()
	c := l.given
	l.conn, l.closed = nil, true
	l.mu.Unlock()
	c.Close()
	l.end()
	return nil
}

// lazyListener is the listener of the connection on which the child calls
// the parent: the child makes it when it calls ParentConn, which may be
// late or never. The first Accept waits for it (accept), later ones as a
// oneConnListener's do.
type lazyListener struct {
	ep     Endpoint
	accept func(stop <-chan struct{}) (net.Conn, error)
	stop   chan struct{} // closed by Close: accept gives up

	accepting sync.Mutex // held while the child is awaited
	mu        sync.Mutex
	one       *oneConnListener
	failed    error
	closeOnce sync.Once
}

func newLazyListener(ep Endpoint, accept func(stop <-chan struct{}) (net.Conn, error)) *lazyListener {
	return &lazyListener{ep: ep, accept: accept, stop: make(chan struct{})}
}

func (l *lazyListener) Accept() (net.Conn, error) {
	// Servers accept from several goroutines: one waits for the child,
	// the others for it.
	l.accepting.Lock()
	l.mu.Lock()
	one, failed := l.one, l.failed
	l.mu.Unlock()
	if one == nil && failed == nil {
		conn, err := l.accept(l.stop)
		l.mu.Lock()
		switch {
		case err != nil:
			l.failed = fmt.Errorf("%w: %v", ErrPeerGone, err)
		case inherit.Closed(l.stop):
			conn.Close()
			l.failed = ErrPeerGone
		default:
			l.one = newOneConnListener(conn, l.ep)
		}
		one, failed = l.one, l.failed
		l.mu.Unlock()
	}
	l.accepting.Unlock()
	if failed != nil {
		return nil, failed
	}
	return one.Accept()
}

func (l *lazyListener) Close() error {
	l.closeOnce.Do(func() { close(l.stop) })
	l.mu.Lock()
	one := l.one
	l.mu.Unlock()
	if one != nil {
		one.Close()
	}
	return nil
}

func (l *lazyListener) Addr() net.Addr { return inheritedAddr(l.ep.Address) }

func (l *lazyListener) endpoint() Endpoint { return l.ep }

func (l *oneConnListener) Addr() net.Addr { return inheritedAddr(l.ep.Address) }

func (l *oneConnListener) endpoint() Endpoint { return l.ep }

// inheritedAddr is the address of an inherited connection's listener.
type inheritedAddr string

func (inheritedAddr) Network() string { return string(Inherited) }

func (a inheritedAddr) String() string { return string(a) }

var (
	childOnce  sync.Once
	childSpec  []string // the connections childEnv names, after its version
	childErr   error
	childErrs  []error // why each of childSpec cannot be used, or nil
	childTaken [2]bool
	childMu    sync.Mutex
)

// init claims what a parent handed this process, before anything else can
// start a process: childEnv is read and removed from the environment, and
// the descriptors it names are checked and made close-on-exec (see
// claimInherited), so that a process this one starts, even before it
// calls ChildListener, inherits neither. ChildListener and ParentConn take
// what was read here.
func init() { inheritedSpec() }

// inheritedSpec reads childEnv once, and removes it from the environment so
// that the child's own children do not take it for theirs.
func inheritedSpec() ([]string, error) {
	childOnce.Do(func() {
		v, ok := os.LookupEnv(childEnv)
		if !ok {
			childErr = ErrNotChild
			return
		}
		os.Unsetenv(childEnv)
		f := strings.Fields(v)
		switch {
		case len(f) == 0 || f[0] != childEnvVersion:
			childErr = fmt.Errorf("grpcipc: %s=%q: not version %s of grpcipc's child convention (a parent with another grpcipc version?)", childEnv, v, childEnvVersion)
		case len(f) < 2 || len(f) > 3:
			childErr = fmt.Errorf("grpcipc: %s=%q: want a version and one or two connections", childEnv, v)
		default:
			childSpec = f[1:]
			childErrs = claimInherited(childSpec)
		}
	})
	return childSpec, childErr
}

// takeInherited returns the inherited connection i (0: serve the parent,
// 1: call the parent), once.
func takeInherited(i int) (net.Conn, error) {
	spec, err := inheritedSpec()
	if err != nil {
		return nil, err
	}
	if i >= len(spec) {
		return nil, errors.New("grpcipc: the parent serves no services to this child (StartChild without WithParentServer)")
	}
	childMu.Lock()
	defer childMu.Unlock()
	if childTaken[i] {
		return nil, errors.New("grpcipc: the parent's connection was already taken (ChildListener and ParentConn may each be called once)")
	}
	childTaken[i] = true
	if childErrs[i] != nil {
		return nil, childErrs[i]
	}
	return openInherited(spec[i])
}

// ChildListener returns, in a process started by [StartChild], a listener
// that yields the parent's connection once: serve it with a [Server]
// (srv.Serve(lis)), whose policy applies to the parent as to any caller
// (the default admits the same user). After the parent's connection closes
// (the parent called Close, or died) Accept fails with [ErrPeerGone], so
// Serve returns it and a child that then returns from main ends with its
// parent. In any other
// process it returns [ErrNotChild]. It may be called once.
func ChildListener() (net.Listener, error) {
	conn, err := takeInherited(0)
	if err != nil {
		return nil, err
	}
	ic := conn.(*inheritedConn)
	pid, _ := ic.peer.PID()
	return newOneConnListener(ic, Endpoint{Transport: Inherited, Address: fmt.Sprintf("parent pid %d", pid)}), nil
}

// ParentConn returns, in a process started by [StartChild] with
// [WithParentServer], a client connection to the services the parent
// serves. The parent is checked as any server is ([WithExpectedServer];
// by default it must run as this process's user or as root). It may be
// called once; in a process StartChild did not start it returns
// [ErrNotChild].
func ParentConn(opts ...ClientOption) (*ClientConn, error) {
	conn, err := takeInherited(1)
	if err != nil {
		return nil, err
	}
	pid, _ := conn.(*inheritedConn).peer.PID()
	ep := Endpoint{Transport: Inherited, Address: fmt.Sprintf("parent pid %d", pid)}
	return newClientConn(ep, dialOnce(conn), opts)
}

// dialOnce is the dialer of an inherited connection, which is made once:
// it yields conn, then an error.
func dialOnce(conn net.Conn) func(context.Context) (net.Conn, error) {
	var mu sync.Mutex
	return func(context.Context) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if conn == nil {
			return nil, errors.New("it is closed; an inherited connection is made once")
		}
		c := conn
		conn = nil
		return c, nil
	}
}

// checkParent checks that the process at the other end of an inherited
// connection is this process's parent: one that exited, and whose
// connection another process now holds, is not.
func checkParent(peer *Creds) error {
	pid, ok := peer.PID()
	if !ok {
		return errors.New("the OS did not tell the parent's PID")
	}
	if ppid := os.Getppid(); pid != ppid {
		return fmt.Errorf("the connection's other end is pid %d, not this process's parent (pid %d): the parent has exited?", pid, ppid)
	}
	return nil
}
