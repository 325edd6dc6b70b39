package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/grpcipc/grpcipc/internal/inherit"
)

// childEnv tells a child started by StartChild where its connections are:
// "1" (the version of this convention), the connection on which it serves
// the parent, and, when the parent serves it too, the one on which it
// calls the parent: "fd:3" on Unix, "npipe:NAME" on Windows.
const childEnv = "GRPCIPC_CHILD"

// childEnvVersion is the version of childEnv's format.
const childEnvVersion = "1"

// defaultStopTimeout is how long Child.Close waits for the child to exit
// before it kills it.
const defaultStopTimeout = 5 * time.Second

// ChildOption configures [StartChild].
type ChildOption interface {
	applyChild(*childConfig) error
}

type childConfig struct {
	server      *Server
	stopTimeout time.Duration
	clientOpts  []ClientOption
	output      *slog.Logger
}

type childOptionFunc func(*childConfig) error

func (f childOptionFunc) applyChild(c *childConfig) error { return f(c) }

// WithParentServer serves srv to the child on a second inherited
// connection, which the child reaches with [ParentConn]: the child calls
// the parent's services there (hashicorp/go-plugin's broker pattern). srv's
// policy applies to the child's calls (the default admits the parent's own
// user). Child.Close stops serving it; srv itself is not stopped.
func WithParentServer(srv *Server) ChildOption {
	return childOptionFunc(func(c *childConfig) error {
		if srv == nil {
			return errors.New("grpcipc: WithParentServer(nil)")
		}
		c.server = srv
		return nil
	})
}

// WithStopTimeout sets how long [Child.Close] waits for the child to exit
// after it has closed the child's connections (and on Unix sent SIGTERM)
// before it kills it: 5 seconds by default.
func WithStopTimeout(d time.Duration) ChildOption {
	return childOptionFunc(func(c *childConfig) error {
		if d <= 0 {
			return fmt.Errorf("grpcipc: WithStopTimeout(%v): not positive", d)
		}
		c.stopTimeout = d
		return nil
	})
}

// WithChildClientOptions configures the parent's connection to the child
// ([Child.Conn]): interceptors, [WithExpectedServer], [WithHTTP2].
func WithChildClientOptions(opts ...ClientOption) ChildOption {
	return childOptionFunc(func(c *childConfig) error {
		c.clientOpts = append(c.clientOpts, opts...)
		return nil
	})
}

// WithChildOutput sends the child's standard output and standard error to
// logger, a record per line at level Info, with the attributes pid (the
// child's) and stream ("stdout" or "stderr"); the line, without its "\n"
// (or "\r\n"), is the message. A line longer than 64 KiB is logged in
// parts of at most 64 KiB (cut between UTF-8 characters), each but the
// last with the attribute partial=true: a child that never ends its line
// costs no more memory. Nothing is lost when the child exits: a last line
// without a newline is logged too, before [Child.Exited] is closed and
// [Child.Wait] or [Child.Close] return, and the goroutines that read the
// output have ended by then. Output that a process the child started
// still writes after the child exited is logged for a second at most (see
// StartChild on cmd.WaitDelay). StartChild fails when cmd.Stdout or
// cmd.Stderr is set: the output would go to one place or the other.
func WithChildOutput(logger *slog.Logger) ChildOption {
	return childOptionFunc(func(c *childConfig) error {
		if logger == nil {
			return errors.New("grpcipc: WithChildOutput(nil)")
		}
		c.output = logger
		return nil
	})
}

// Child is a program started by [StartChild], with a connection to it.
type Child struct {
	cmd         *exec.Cmd
	conn        *ClientConn
	peer        *Creds
	stopTimeout time.Duration
	served      net.Listener // the parent's services' listener, or nil
	cleanup     []func()     // what the transport leaves to close
	output      []*lineLogger

	// dropped is set when a read or write on the connection to the
	// child found the child's end closed: the child exited, or let go of
	// its connection.
	dropped atomic.Bool

	// mu orders Close's steps with the watcher's verdict (see end).
	mu       sync.Mutex
	ended    bool // the watcher has reaped the process and set err
	stopping bool // Close has begun to stop the child
	before   bool // when Close began, the child had exited or dropped its connection
	killed   bool // Close killed the child after the stop timeout

	exited chan struct{}    // closed when the process has been waited for and err set
	state  *os.ProcessState // how the process ended; set before exited closes
	err    error            // what Wait and Close return; set before exited closes

	closeOnce sync.Once
}

// StartChild starts cmd (which must not have been started) with a
// connection to it that nothing else can reach, waits until the child has
// called [ChildListener], and returns the child with a client connection
// to the services it serves there. ctx bounds that wait; a child that
// exits first is an error.
//
// On Unix the child inherits its end of a socket pair as a descriptor
// (nothing in the file system, no name to squat, no other process can
// connect), and through it sends the parent the end of a socket pair it
// makes itself: the kernel records each pair's creator, so the parent
// learns the child's identity ([Child.Identity]) as of the moment the child
// connected, after exec and after any privileges a launcher dropped, and
// refuses a connection whose creator is not the process it started. On
// Windows the connection is a named pipe of a random name whose DACL
// admits only this user and whose client must be the child's PID (any
// other client is refused and logged; another process of the same user
// can spoof a pipe client's PID).
//
// On Linux the child is sent SIGTERM when the thread that started it ends
// (Pdeathsig: the parent died); everywhere the child's listener fails once
// the parent's end of the connection closes, so a child that returns when
// Serve does ends with its parent. cmd's own settings (Env, Stdout,
// ExtraFiles, SysProcAttr) are kept; cmd.WaitDelay, when not set, becomes
// a second (at most half the stop timeout), so that a process the child
// leaves holding its output pipes cannot keep Close waiting. The child's
// own children inherit neither its ends of the connections nor
// GRPCIPC_CHILD, even those it starts before it calls ChildListener: the
// grpcipc package claims both when it initialises in the child. The
// child's output goes where cmd.Stdout and cmd.Stderr say, or to a logger
// ([WithChildOutput]). cmd.Wait is the Child's to call: use [Child.Wait].
//
// Debugging. A child started by hand cannot be attached to later
// (hashicorp/go-plugin's "reattach"), by design: each side knows the
// other from the kernel's record of who made the connection, and only a
// process this parent started holds a connection it made. A process
// started by hand has none ([ChildListener] returns [ErrNotChild]); the
// socket path or PID a developer would give the parent instead is a
// claim, not a proof, and taking it would let any process of the user
// that serves there pass for the child. A debugger that starts the
// program itself (dlv exec, gdb --args) as cmd is refused for the same
// reason: the child's end of the connection is then held by the
// debugger's child, not by the process StartChild started. Attach a
// debugger to the running child instead ([Child.PID]: dlv attach PID; on
// Linux with Yama's ptrace_scope at 1, as root); a child to be debugged
// from its start can wait for the debugger before it calls ChildListener,
// within ctx. A program meant to run by hand too can, when ChildListener
// returns ErrNotChild, serve on an endpoint of its own ([Listen],
// [NewServer]) for a [NewClient]: that connection is checked as any is
// (by user, and by executable on Linux and Windows: [WithExpectedServer]),
// not as the process the parent started.
func StartChild(ctx context.Context, cmd *exec.Cmd, opts ...ChildOption) (*Child, error) {
	if cmd.Process != nil {
		return nil, errors.New("grpcipc: StartChild: the command was already started")
	}
	cfg := childConfig{stopTimeout: defaultStopTimeout}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("grpcipc: nil ChildOption")
		}
		if err := o.applyChild(&cfg); err != nil {
			return nil, err
		}
	}
	if cmd.WaitDelay == 0 {
		// Wait returns when the child has exited, even if a process it
		// left behind still holds the pipes of cmd.Stdout or Stderr, and
		// within the stop timeout, so that Close can tell an exit from a
		// kill.
		cmd.WaitDelay = min(time.Second, cfg.stopTimeout/2)
	}
	c := &Child{cmd: cmd, stopTimeout: cfg.stopTimeout, exited: make(chan struct{})}
	if cfg.output != nil {
		if cmd.Stdout != nil || cmd.Stderr != nil {
			return nil, errors.New("grpcipc: StartChild: WithChildOutput, and cmd.Stdout or cmd.Stderr is set: the output can go to one place only")
		}
		stdout := &lineLogger{logger: cfg.output, cmd: cmd, stream: "stdout"}
		stderr := &lineLogger{logger: cfg.output, cmd: cmd, stream: "stderr"}
		cmd.Stdout, cmd.Stderr = stdout, stderr
		c.output = []*lineLogger{stdout, stderr}
	}
	conns, err := startChild(ctx, cmd, cfg.server != nil, c)
	if err != nil {
		c.closeTransport()
		return nil, fmt.Errorf("grpcipc: starting %s: %w", cmd.Path, err)
	}
	c.peer = conns.peer
	conns.serve.Conn = &endWatch{Conn: conns.serve.Conn, dropped: &c.dropped}
	c.cleanup = append(c.cleanup, func() { conns.serve.Close() }) // if never dialled
	ep := Endpoint{Transport: Inherited, Address: fmt.Sprintf("child pid %d", cmd.Process.Pid)}
	c.conn, err = newClientConn(ep, dialOnce(conns.serve), cfg.clientOpts)
	if err != nil {
		conns.serve.Close()
		if conns.calls != nil {
			conns.calls.Close()
		}
		c.kill()
		return nil, err
	}
	if cfg.server != nil {
		c.served = conns.calls
		go cfg.server.Serve(c.served)
	}
	return c, nil
}

// childConns are the parent's ends of a child's connections, wrapped with
// the child's identity.
type childConns struct {
	serve *inheritedConn // the child serves, the parent calls
	calls net.Listener   // yields the connection on which the child calls the parent; nil without WithParentServer
	peer  *Creds
}

// Conn is the client connection to the services the child serves. It
// speaks the fast path to a child that serves with [NewServer], HTTP/2 to
// one that serves with a plain grpc.Server given [ServerOptions] (or with
// [WithHTTP2]). It is made once: when the child has gone, calls fail with
// codes.Unavailable.
func (c *Child) Conn() *ClientConn { return c.conn }

// Identity is the child's OS identity, as the OS told it when the child
// connected (see [StartChild]).
func (c *Child) Identity() *Creds { return c.peer }

// PID is the child's process ID.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Exited is closed when the child process has exited, once [Child.Wait]
// and [Child.ExitCode] can tell how it ended (and its last output is
// logged, with [WithChildOutput]).
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Wait waits for the child process to exit, and returns what [Child.Close]
// does: nil when the child exited with status 0, or ended by the SIGTERM
// Close sent it; otherwise a [*ChildExitError] that names the exit status
// or the signal. Wait does not stop the child (Close does), and may be
// called from any number of goroutines, before or after Close.
func (c *Child) Wait() error {
	<-c.exited
	return c.err
}

// ExitCode returns the child's exit status once it has exited (see
// [Child.Exited]), as [os.ProcessState.ExitCode] does: -1 while the child
// runs, and when a signal ended it.
func (c *Child) ExitCode() int {
	select {
	case <-c.exited:
	default:
		return -1
	}
	if c.state == nil {
		return -1
	}
	return c.state.ExitCode()
}

// Close stops the child: it closes the connections to it (the child's
// listener then fails, and a child that returns when Serve does exits),
// on Unix sends it SIGTERM, waits up to the stop timeout
// ([WithStopTimeout]) and then kills it. It returns once the child has
// exited, what [Child.Wait] returns: nil when the child exited with
// status 0 or died of Close's SIGTERM, and otherwise a [*ChildExitError]:
// the child exited with another status, before Close or when asked to
// stop (a child should exit 0 when its listener fails with
// [ErrPeerGone]); a signal ended it that Close did not send (a SIGTERM is
// taken for Close's unless the child had exited, or its connection had
// broken, before Close began); or Close had to kill it. That holds
// whatever the order in which the child exits, its connection breaks, the
// process is reaped and Close is called. Later calls return the same.
func (c *Child) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		stop := !c.ended
		if stop {
			c.before = c.dropped.Load() || inherit.Exited(c.cmd.Process.Pid)
			c.stopping = true
		}
		c.mu.Unlock()
		c.closeTransport()
		if !stop {
			return
		}
		terminate(c.cmd.Process)
		timer := time.NewTimer(c.stopTimeout)
		defer timer.Stop()
		select {
		case <-c.exited:
		case <-timer.C:
			c.mu.Lock()
			c.killed = !c.ended
			c.mu.Unlock()
			c.kill()
		}
	})
	<-c.exited
	return c.err
}

// watch waits for the started process in the background: it reaps the
// process, logs the last of its output, and gives its verdict (see end).
func (c *Child) watch() {
	go func() {
		err := c.cmd.Wait()
		for _, o := range c.output {
			o.flush()
		}
		c.end(err)
		close(c.exited)
	}()
}

// end sets what Wait and Close return, from the process's wait status and
// from what Close did. The status alone tells most ends, whenever the
// process is reaped: status 0 is clean, another status or a signal Close
// never sends is a failure. Only SIGTERM and SIGKILL need the order, which
// Close records under mu before it signals: a SIGTERM after Close began,
// to a child that had then neither exited nor dropped its connection, was
// Close's; a SIGKILL after Close's timeout, Close's kill.
func (c *Child) end(waitErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	c.state = c.cmd.ProcessState
	pid := c.cmd.Process.Pid
	st := c.state
	switch {
	case st == nil: // cmd.Wait failed before it could wait: someone else waited
		c.err = fmt.Errorf("grpcipc: waiting for the child (pid %d): %w", pid, waitErr)
		return
	case st.Success():
		if waitErr != nil && !errors.Is(waitErr, exec.ErrWaitDelay) {
			c.err = fmt.Errorf("grpcipc: the child's (pid %d) output: %w", pid, waitErr)
		}
		return
	}
	e := &ChildExitError{PID: pid, ExitCode: st.ExitCode(), timeout: c.stopTimeout, before: c.before || !c.stopping}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal()
	}
	errors.As(waitErr, &e.err)
	switch {
	case c.killed && (e.Signal == nil || e.Signal == os.Kill):
		e.Killed = true
	case c.stopping && !c.before && e.Signal == syscall.SIGTERM:
		return // Close's SIGTERM
	}
	c.err = e
}

func (c *Child) closeTransport() {
	if c.conn != nil {
		c.conn.Close()
	}
	if c.served != nil {
		c.served.Close()
	}
	for _, f := range c.cleanup {
		f()
	}
	c.cleanup = nil
}

func (c *Child) kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

// endWatch is the parent's end of the connection to the child: it records
// when a read or write finds that the child closed its end (it exited, or
// closed its connection), which Close takes for a child that ended before
// it. The gRPC client reads the connection as long as it uses it, so a
// call that failed because the child went away was preceded by the record.
type endWatch struct {
	net.Conn
	dropped *atomic.Bool
}

// NetConn returns the connection under it: on Unix, what carries the
// fast path's descriptors (files sent with calls).
func (w *endWatch) NetConn() net.Conn { return w.Conn }

func (w *endWatch) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	w.check(err)
	return n, err
}

func (w *endWatch) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.check(err)
	return n, err
}

// check records err when it says that the other end closed (end of
// stream, reset, broken pipe): not a deadline, not this end's own Close.
func (w *endWatch) check(err error) {
	var ne net.Error
	if err == nil || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout() {
		return
	}
	w.dropped.Store(true)
}
