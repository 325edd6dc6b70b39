package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
)

const (
	readyTimeout = 15 * time.Second // for the child to print "serving"
	exitTimeout  = 15 * time.Second // for the child to stop once told to
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("demo", "[--count N]",
		"Start \"grpcipc serve\" in a child process on a fresh private endpoint, call\n"+
			"greet.Greeter/SayHello and grpcipc.v1.Identity/WhoAmI, print what happened with\n"+
			"the latencies, stop the child and remove the socket and its directory.",
		0, 0, stdout)
	count := c.fs.Int("count", 100, "SayHello calls to time after the first")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *count < 1 || *count > 10_000_000 {
		return usageErrorf("demo: --count must be from 1 to 10000000")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: finding this program to run the server: %w", err)
	}
	ep, what, cleanup, err := demoEndpoint()
	if err != nil {
		return fmt.Errorf("demo: %w", unprefixed{err})
	}
	var child *serverProcess
	defer func() {
		// Stop the server, which removes its socket, then remove what is
		// left (the socket if the server could not, its directory).
		if child != nil {
			if stopErr := child.stop(); stopErr != nil && err == nil {
				err = stopErr
			}
		}
		if cleanErr := cleanup(); cleanErr != nil && err == nil {
			err = fmt.Errorf("demo: %w", cleanErr)
		}
		if ctx.Err() != nil {
			err = &exitError{code: 130, err: errors.New("demo interrupted; server stopped and its files removed")}
		} else if err == nil {
			fmt.Fprintf(stdout, "  stopped    server pid %d exited; %s\n", child.cmd.Process.Pid, what)
		}
	}()

	fmt.Fprintf(stdout, "grpcipc demo: a gRPC server in a child process, called over %s\n\n", ep.Transport)
	child, err = startServer(ctx, exe, ep, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  server     pid %d serving %s (only this user may connect)\n", child.cmd.Process.Pid, ep)

	conn, err := grpcipc.NewClient(ep.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	greeter := greetpb.NewGreeterClient(conn)
	req := &greetpb.HelloRequest{Name: "grpcipc demo"}

	start := time.Now()
	reply, err := greeter.SayHello(ctx, req)
	if err != nil {
		return fmt.Errorf("demo: SayHello on %s: %w", ep, err)
	}
	first := time.Since(start)
	fmt.Fprintf(stdout, "  SayHello   {name: %q} -> {message: %q}\n", req.GetName(), reply.GetMessage())
	fmt.Fprintf(stdout, "             first call %v (includes connecting), over %s\n", round(first), protocolName(conn.Protocol()))
	lat := make([]time.Duration, *count)
	for i := range lat {
		start := time.Now()
		if _, err := greeter.SayHello(ctx, req); err != nil {
			return fmt.Errorf("demo: SayHello on %s: %w", ep, err)
		}
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	fmt.Fprintf(stdout, "             %d more calls: median %v, p99 %v, min %v\n",
		len(lat), round(lat[len(lat)/2]), round(lat[len(lat)*99/100]), round(lat[0]))

	start = time.Now()
	who, err := identitypb.NewIdentityClient(conn).WhoAmI(ctx, &identitypb.WhoAmIRequest{})
	if err != nil {
		return fmt.Errorf("demo: WhoAmI on %s: %w", ep, err)
	}
	fmt.Fprintf(stdout, "  WhoAmI     %v: transport %s, security %s%s\n",
		round(time.Since(start)), who.GetTransport(), who.GetSecurityLevel(), describeCaller(who))
	return nil
}

// describeCaller says what the server knew of the caller's OS identity.
func describeCaller(w *identitypb.WhoAmIResponse) string {
	var parts []string
	if w.Pid != nil {
		parts = append(parts, fmt.Sprintf("pid %d", w.GetPid()))
	}
	if w.Uid != nil {
		parts = append(parts, "uid "+w.GetUid())
	}
	if w.Gid != nil {
		parts = append(parts, "gid "+w.GetGid())
	}
	if w.User != nil {
		parts = append(parts, "user "+w.GetUser())
	}
	if len(parts) == 0 {
		return ""
	}
	return ", caller " + strings.Join(parts, " ")
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(time.Microsecond / 10)
	}
	return d
}

// serverProcess is a "grpcipc serve" child.
type serverProcess struct {
	cmd     *exec.Cmd
	drained chan struct{} // closed when the child's stdout is read to its end
}

// startServer runs "grpcipc serve --listen ep" and waits until it says it
// is serving.
func startServer(ctx context.Context, exe string, ep grpcipc.Endpoint, stderr io.Writer) (*serverProcess, error) {
	cmd := exec.Command(exe, "serve", "--listen", ep.String())
	cmd.Stderr = stderr
	cmd.SysProcAttr = childProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("demo: starting the server: %w", err)
	}
	p := &serverProcess{cmd: cmd, drained: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		defer close(p.drained)
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		ready <- strings.TrimSpace(line)
		io.Copy(io.Discard, r)
	}()
	select {
	case line := <-ready:
		if line == "serving "+ep.String() {
			return p, nil
		}
		p.stop()
		return nil, fmt.Errorf("demo: the server did not start (see its error above)")
	case <-time.After(readyTimeout):
		p.stop()
		return nil, fmt.Errorf("demo: the server did not say it was serving within %v", readyTimeout)
	case <-ctx.Done():
		p.stop()
		return nil, &exitError{code: 130, err: errors.New("demo interrupted; server stopped and its files removed")}
	}
}

// stop asks the child to stop gracefully, kills it if it does not, and
// waits for it.
func (p *serverProcess) stop() error {
	graceful := terminate(p.cmd.Process)
	select {
	case <-p.drained:
	case <-time.After(exitTimeout):
		p.cmd.Process.Kill()
		graceful = false
		<-p.drained
	}
	if err := p.cmd.Wait(); err != nil && graceful {
		return fmt.Errorf("demo: server pid %d: %w", p.cmd.Process.Pid, err)
	}
	return nil
}

// protocolName says which protocol a connection speaks, in words.
func protocolName(p grpcipc.Protocol) string {
	switch p {
	case grpcipc.ProtocolFast:
		return "grpcipc's fast path"
	case grpcipc.ProtocolHTTP2:
		return "HTTP/2"
	}
	return "no protocol yet"
}
