package grpcipc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc/internal/winpipe"
)

// startChild serves one named pipe of a random name (two with call: the
// child calls the parent on the second), admitting this user only, starts
// cmd with their names in childEnv, and takes from each the first
// connection whose client is the child's process; any other client is
// refused, logged and closed. The pipes are closed once the child has
// connected, so that the names no longer exist.
func startChild(ctx context.Context, cmd *exec.Cmd, call bool, c *Child) (childConns, error) {
	self, err := selfIdentity()
	if err != nil {
		return childConns{}, err
	}
	sddl, err := pipeSDDL(SameUserPolicy(), self)
	if err != nil {
		return childConns{}, err
	}
	var random [12]byte
	rand.Read(random[:])
	base := fmt.Sprintf("grpcipc-child-%d-%s", os.Getpid(), hex.EncodeToString(random[:]))
	n := 1
	if call {
		n = 2
	}
	spec := []string{childEnvVersion}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for i := range n {
		name := fmt.Sprintf("%s-%d", base, i)
		l, err := winpipe.Listen(`\\.\pipe\`+name, sddl)
		if err != nil {
			return childConns{}, err
		}
		listeners = append(listeners, l)
		spec = append(spec, "npipe:"+name)
	}
	cmd.Env = append(envWithout(cmd.Environ(), childEnv), childEnv+"="+strings.Join(spec, " "))
	if err := cmd.Start(); err != nil {
		return childConns{}, err
	}
	c.watch()
	pid := cmd.Process.Pid
	// The child connects to the first pipe when it calls ChildListener,
	// which it must do to be of use; to the second when it calls
	// ParentConn, which may be later: that one is awaited by the listener
	// of the parent's services.
	type accepted struct {
		conn *inheritedConn
		err  error
	}
	first := make(chan accepted, 1)
	go func() {
		conn, err := acceptChild(listeners[0], pid)
		first <- accepted{conn, err}
	}()
	var r accepted
	select {
	case r = <-first:
	case <-ctx.Done():
		listeners[0].Close()
		if r = <-first; r.conn != nil {
			r.conn.Close()
		}
		r.err = fmt.Errorf("waiting for the child (pid %d) to connect: %w", pid, ctx.Err())
	case <-c.exited:
		listeners[0].Close()
		if r = <-first; r.conn != nil {
			r.conn.Close()
		}
		r.err = fmt.Errorf("the child (pid %d) exited before it connected: %s", pid, c.state)
	}
	if r.err != nil {
		c.kill()
		return childConns{}, r.err
	}
	conns := childConns{serve: r.conn, peer: r.conn.peer}
	if n == 2 {
		second := listeners[1]
		listeners = listeners[:1] // the lazy listener closes the second pipe
		conns.calls = newLazyListener(Endpoint{Transport: Inherited, Address: fmt.Sprintf("child pid %d", pid)},
			func(stop <-chan struct{}) (net.Conn, error) {
				go func() {
					<-stop
					second.Close()
				}()
				conn, err := acceptChild(second, pid)
				second.Close() // the name is gone: no one else can connect
				return conn, err
			})
	}
	return conns, nil
}

// acceptChild accepts connections on l until one comes from process pid,
// refusing and logging any other.
func acceptChild(l net.Listener, pid int) (*inheritedConn, error) {
	refused := 0
	for {
		conn, err := l.Accept()
		if err != nil {
			return nil, err
		}
		peer, err := readPeerCreds(conn, true, nil, false)
		if err == nil {
			if p, ok := peer.PID(); !ok || p != pid {
				err = fmt.Errorf("its client is %s, not the child (pid %d)", peer, pid)
			}
		}
		if err != nil {
			if refused++; refused <= maxRefusalLogs {
				slog.Default().Warn("grpcipc: a child's pipe refused a connection", "pipe", l.Addr().String(), "err", err,
					"refused", refused, "logged_at_most", maxRefusalLogs)
			}
			conn.Close()
			continue
		}
		return &inheritedConn{Conn: conn, peer: peer}, nil
	}
}

// maxRefusalLogs bounds the log lines of one pipe's refused clients.
const maxRefusalLogs = 10

// claimInherited: pipes are dialled by name, nothing is inherited.
func claimInherited(spec []string) []error { return make([]error, len(spec)) }

// openInherited connects to the pipe spec names ("npipe:NAME") and checks
// that its server is this process's parent.
func openInherited(spec string) (net.Conn, error) {
	name, ok := strings.CutPrefix(spec, "npipe:")
	if !ok || name == "" {
		return nil, fmt.Errorf("grpcipc: %s names %q, not a pipe (npipe:NAME)", childEnv, spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := winpipe.Dial(ctx, `\\.\pipe\`+name, false)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: connecting to the parent: %w", err)
	}
	peer, err := readPeerCreds(conn, false, nil, false)
	if err == nil {
		err = checkParent(peer)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("grpcipc: the parent's pipe: %w", err)
	}
	return &inheritedConn{Conn: conn, peer: peer}, nil
}

// terminate: Windows has no signal to ask a process to stop; the child's
// connections closing is the request.
func terminate(*os.Process) {}

// envWithout is env without the variable name (case-insensitively, as
// Windows compares names).
func envWithout(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !strings.EqualFold(k, name) {
			out = append(out, kv)
		}
	}
	return out
}
