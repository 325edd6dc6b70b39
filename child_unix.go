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

	"github.com/grpcipc/grpcipc/internal/peercred"
	"golang.org/x/sys/unix"
)

// startChild starts cmd with the child's ends of one socket pair (two with
// call: the child calls the parent on the second) as inherited
// descriptors, named in childEnv.
func startChild(_ context.Context, cmd *exec.Cmd, call bool, c *Child) (childConns, error) {
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
		// As the os package makes descriptors: close-on-exec, set under
		// ForkLock so that no other child started meanwhile inherits them.
		syscall.ForkLock.RLock()
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.CloseOnExec(fds[0])
			unix.CloseOnExec(fds[1])
		}
		syscall.ForkLock.RUnlock()
		if err != nil {
			closeAll(parents)
			closeAll(children)
			return childConns{}, os.NewSyscallError("socketpair", err)
		}
		parents = append(parents, os.NewFile(uintptr(fds[0]), "grpcipc-parent-"+strconv.Itoa(i)))
		children = append(children, os.NewFile(uintptr(fds[1]), "grpcipc-child-"+strconv.Itoa(i)))
		spec = append(spec, "fd:"+strconv.Itoa(3+len(cmd.ExtraFiles)+i))
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, children...)
	cmd.Env = append(envWithout(cmd.Environ(), childEnv), childEnv+"="+strings.Join(spec, " "))
	setParentDeathSignal(cmd)
	err := cmd.Start()
	// The child has its ends (or failed); this process must not keep them,
	// or the child would never see its parent's end close.
	cmd.ExtraFiles = cmd.ExtraFiles[:len(cmd.ExtraFiles)-n]
	closeAll(children)
	if err != nil {
		closeAll(parents)
		return childConns{}, err
	}
	c.watch()
	peer, err := childCreds(cmd.Process.Pid)
	if err != nil {
		closeAll(parents)
		c.kill()
		return childConns{}, err
	}
	var conns childConns
	conns.peer = peer
	for i, f := range parents {
		nc, err := net.FileConn(f) // a duplicate
		f.Close()
		if err != nil {
			if conns.serve != nil {
				conns.serve.Close()
			}
			closeAll(parents[i+1:])
			c.kill()
			return childConns{}, err
		}
		tuneSocket(nc)
		ic := &inheritedConn{Conn: nc, peer: peer}
		if i == 0 {
			conns.serve = ic
		} else {
			conns.calls = newOneConnListener(ic, Endpoint{Transport: Inherited, Address: fmt.Sprintf("child pid %d", cmd.Process.Pid)})
		}
	}
	return conns, nil
}

// childCreds reads the identity of the child process pid, which this
// process started and has not waited for, so that its PID cannot have
// been reused.
func childCreds(pid int) (*Creds, error) {
	info, err := peercred.ReadChild(pid)
	if err != nil {
		return nil, fmt.Errorf("reading the child's identity: %w", err)
	}
	return &Creds{info: *info}, nil
}

// openInherited opens the inherited descriptor spec names ("fd:N") and
// reads who is at its other end: the parent, which made the socket pair
// (the kernel records its creator on both ends).
func openInherited(spec string) (net.Conn, error) {
	s, ok := strings.CutPrefix(spec, "fd:")
	fd, err := strconv.Atoi(s)
	if !ok || err != nil || fd < 3 {
		return nil, fmt.Errorf("grpcipc: %s names %q, not an inherited descriptor (fd:N)", childEnv, spec)
	}
	f := os.NewFile(uintptr(fd), "grpcipc-inherited")
	if f == nil {
		return nil, fmt.Errorf("grpcipc: %s names descriptor %d, which is not open", childEnv, fd)
	}
	nc, err := net.FileConn(f) // a duplicate, close-on-exec
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("grpcipc: inherited descriptor %d: %w", fd, err)
	}
	if _, ok := nc.(*net.UnixConn); !ok {
		nc.Close()
		return nil, fmt.Errorf("grpcipc: inherited descriptor %d is not a Unix socket", fd)
	}
	tuneSocket(nc)
	peer, err := readPeerCreds(nc, true, nil)
	if err == nil {
		err = checkParent(peer)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("grpcipc: inherited descriptor %d: %w", fd, err)
	}
	return &inheritedConn{Conn: nc, peer: peer}, nil
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
