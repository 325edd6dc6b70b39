//go:build unix

package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/grpcipc/grpcipc/internal/inherit"
	"github.com/grpcipc/grpcipc/internal/peercred"
	"github.com/grpcipc/grpcipc/internal/rights"
)

// The Unix convention. The parent makes a socket pair per direction and
// the child inherits its ends (fd:N in childEnv): the calls run over these
// pairs, each process holding its own end (a socket the other never had,
// so that it cannot change its flags). To tell the parent who it is, the
// child, when it calls ChildListener (or ParentConn), sends one end of a
// socket pair it makes (SCM_RIGHTS): the kernel records a pair's creator,
// so each side learns the other's identity from the kernel, as of that
// moment: the child from the inherited pair (made by the parent), the
// parent from the proof (made by the child, after exec and whatever
// privileges it dropped), whose creator must be the very process the
// parent started, still alive.

// startChild starts cmd with the child's ends of the socket pairs, and
// waits until the child has sent the connection it serves on.
func startChild(ctx context.Context, cmd *exec.Cmd, call bool, c *Child) (childConns, error) {
	n := 1
	if call {
		n = 2
	}
	var parents, children []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	spec := []string{childEnvVersion}
	for i := range n {
		fds, err := inherit.SocketPair()
		if err != nil {
			closeAll(parents)
			closeAll(children)
			return childConns{}, err
		}
		parents = append(parents, os.NewFile(uintptr(fds[0]), "grpcipc-parent-"+strconv.Itoa(i)))
		children = append(children, os.NewFile(uintptr(fds[1]), "grpcipc-child-"+strconv.Itoa(i)))
		spec = append(spec, "fd:"+strconv.Itoa(3+len(cmd.ExtraFiles)+i))
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, children...)
	cmd.Env = append(envWithout(cmd.Environ(), childEnv), childEnv+"="+strings.Join(spec, " "))
	inherit.SetParentDeathSignal(cmd)
	err := cmd.Start()
	// The child has its ends (or failed); this process must not keep them,
	// or it would not see the child's ends close.
	cmd.ExtraFiles = cmd.ExtraFiles[:len(cmd.ExtraFiles)-n]
	closeAll(children)
	if err != nil {
		closeAll(parents)
		return childConns{}, err
	}
	c.watch()
	var boots []*net.UnixConn
	for _, f := range parents {
		nc, err := net.FileConn(f) // a duplicate
		f.Close()
		if err != nil {
			for _, b := range boots {
				b.Close()
			}
			c.kill()
			return childConns{}, err
		}
		boots = append(boots, nc.(*net.UnixConn))
	}
	pid := cmd.Process.Pid
	conn, err := receiveChildConn(ctx, boots[0], pid, c.exited)
	if err != nil {
		for _, b := range boots {
			b.Close()
		}
		c.kill()
		return childConns{}, err
	}
	conns := childConns{serve: conn, peer: conn.peer}
	if n == 2 {
		ep := Endpoint{Transport: Inherited, Address: fmt.Sprintf("child pid %d", pid)}
		conns.calls = newLazyListener(ep, func(stop <-chan struct{}) (net.Conn, error) {
			conn, err := receiveChildConn(context.Background(), boots[1], pid, stop)
			if err != nil {
				boots[1].Close()
				return nil, err
			}
			return conn, nil
		})
	}
	return conns, nil
}

// receiveChildConn waits on boot for the child's proof, until ctx ends or
// stop closes, checks that the child process pid made it, and returns boot
// as the connection to the child, with the child's identity.
func receiveChildConn(ctx context.Context, boot *net.UnixConn, pid int, stop <-chan struct{}) (*inheritedConn, error) {
	proof, err := inherit.ReceiveProof(ctx, boot, stop)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, fmt.Errorf("waiting for the child (pid %d) to call grpcipc.ChildListener: %w", pid, ctx.Err())
	case errors.Is(err, inherit.ErrPeerClosed):
		return nil, fmt.Errorf("the child (pid %d) exited, or closed its inherited descriptor, before it called grpcipc.ChildListener", pid)
	default:
		return nil, fmt.Errorf("what the child (pid %d) sent: %w", pid, err)
	}
	defer rights.Discard(proof)
	peer, err := proofCreds(proof, pid)
	if err != nil {
		return nil, err
	}
	tuneSocket(boot)
	return &inheritedConn{Conn: rights.NewConn(boot), peer: peer}, nil
}

// proofCreds reads who made the socket the child sent, which must be the
// child itself (its PID known and the one started, the process alive).
func proofCreds(fd, pid int) (*Creds, error) {
	if err := inherit.CheckProof(fd); err != nil {
		return nil, fmt.Errorf("what the child (pid %d) sent: %w", pid, err)
	}
	info, err := peercred.ReadFD(fd, peercred.Want{Exe: func(*peercred.Info) bool { return true }})
	if err != nil {
		return nil, fmt.Errorf("what the child (pid %d) sent: %w", pid, err)
	}
	peer := &Creds{info: *info}
	if p, ok := peer.PID(); !ok || p != pid {
		return nil, fmt.Errorf("the connection was made by %s, not by the child the parent started (pid %d)", peer, pid)
	}
	if err := inherit.CreatorAlive(fd); err != nil {
		return nil, fmt.Errorf("the child (pid %d): %w", pid, err)
	}
	return peer, nil
}

// claimInherited checks each descriptor childEnv names before anything
// takes it, and makes it close-on-exec, so that the child's own children
// never inherit it (whether or not the child goes on to use it). A
// descriptor that fails the check is left alone: it is not ours.
func claimInherited(spec []string) []error {
	errs := make([]error, len(spec))
	for i, s := range spec {
		fd, err := inherit.ParseFD(s)
		if err == nil {
			err = inherit.Claim(fd)
		}
		if err != nil {
			errs[i] = fmt.Errorf("grpcipc: %s: %w", childEnv, err)
		}
	}
	return errs
}

// openInherited takes the inherited socket pair spec names (checked by
// claimInherited), reads the parent's identity from it, and sends the
// parent the proof of who this process is.
func openInherited(spec string) (net.Conn, error) {
	fd, err := inherit.ParseFD(spec)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: %s: %w", childEnv, err)
	}
	// The kernel's record of the inherited pair names its creator: the
	// parent, which must still be this process's parent. Read before the
	// descriptor is taken, so that one refused is left as it is.
	info, err := peercred.ReadFD(fd, peercred.Want{Exe: func(*peercred.Info) bool { return true }})
	if err != nil {
		return nil, fmt.Errorf("grpcipc: inherited descriptor %d: %w", fd, err)
	}
	peer := &Creds{info: *info}
	if err := checkParent(peer); err != nil {
		return nil, fmt.Errorf("grpcipc: inherited descriptor %d: %w", fd, err)
	}
	boot, err := inherit.FileConn(fd)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: inherited descriptor %d: %w", fd, err)
	}
	if err := inherit.SendProof(boot.(*net.UnixConn)); err != nil {
		boot.Close()
		return nil, fmt.Errorf("grpcipc: telling the parent who this process is: %w", err)
	}
	tuneSocket(boot)
	return &inheritedConn{Conn: rights.NewConn(boot.(*net.UnixConn)), peer: peer}, nil
}

// terminate asks the child to stop.
func terminate(p *os.Process) {
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.Kill()
	}
}

// envWithout is env without the variable name.
func envWithout(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
