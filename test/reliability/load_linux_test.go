package grpcipc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func init() {
	// serve ENDPOINT: the demo server in its own process; prints "ready",
	// stops gracefully when its standard input closes.
	grpcipc.RegisterHelper("serve", func(args []string) error {
		l, err := grpcipc.Listen(context.Background(), args[0])
		if err != nil {
			return err
		}
		srv, err := demo.NewServer()
		if err != nil {
			return err
		}
		go func() {
			io.Copy(io.Discard, os.Stdin)
			srv.GracefulStop()
		}()
		fmt.Println("ready")
		return srv.Serve(l)
	})
}

// raiseFileLimit lifts RLIMIT_NOFILE to its hard limit for this test (and
// the processes it starts), restoring it after.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Max < need {
		t.Skipf("RLIMIT_NOFILE hard limit %d is below the %d this test needs", old.Max, need)
	}
	raised := syscall.Rlimit{Cur: old.Max, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// startServeHelper runs the demo server in another process; closing the
// returned function's stdin stops it gracefully, kill stops it at once.
func startServeHelper(t *testing.T, endpoint string) (stop func(), kill func()) {
	t.Helper()
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "serve", endpoint)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := testutil.Start(t, cmd)
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("server helper said %q, %v", line, err)
	}
	go io.Copy(io.Discard, r)
	return func() { stdin.Close(); cmd.Wait() }, func() { cmd.Process.Kill(); cmd.Wait() }
}

func TestLoadThousandConnections(t *testing.T) {
	const conns, callsEach = 1000, 5
	raiseFileLimit(t, 4*conns+256)
	endpoint := testutil.Endpoint(t)
	stop, _ := startServeHelper(t, endpoint)
	defer stop()

	clients := make([]*grpcipc.ClientConn, conns)
	for i := range clients {
		clients[i] = newClient(t, endpoint)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var failures atomic.Int64
	var firstErr atomic.Value
	for _, conn := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			client := greetpb.NewGreeterClient(conn)
			for range callsEach {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				_, err := client.SayHello(ctx, &greetpb.HelloRequest{Name: "load"}, grpc.WaitForReady(true))
				cancel()
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed; the first: %v", n, conns*callsEach, firstErr.Load())
	}
	t.Logf("%d connections, %d calls at once: all served in %v", conns, conns*callsEach, time.Since(began).Round(time.Millisecond))
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// stable returns f's value once it has stopped changing.
func stable(f func() int) int {
	last := f()
	for range 50 {
		time.Sleep(50 * time.Millisecond)
		now := f()
		if now == last {
			return now
		}
		last = now
	}
	return last
}

// settle waits until f reports no more than want, for things that
// goroutines end asynchronously.
func settle(want int, f func() int) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f()
		if got <= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnectCallCloseCycles(t *testing.T) {
	const cycles, workers = 10000, 4
	endpoint := testutil.Endpoint(t)
	startServer(t, endpoint)
	cycle := func() error {
		conn, err := grpcipc.NewClient(endpoint)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = greetpb.NewGreeterClient(conn).SayHello(context.Background(), &greetpb.HelloRequest{Name: "cycle"})
		return err
	}
	if err := cycle(); err != nil { // warm up: first-use allocations
		t.Fatal(err)
	}
	fds := stable(func() int { return openFDs(t) })
	goroutines := stable(goroutinesBesidesIdleWorkers)

	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range cycles / workers {
				if err := cycle(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a cycle failed: %v", err)
	}
	elapsed := time.Since(began)
	if got := settle(fds, func() int { return openFDs(t) }); got != fds {
		t.Errorf("open files: %d before %d cycles, %d after", fds, cycles, got)
	}
	if got := settle(goroutines, goroutinesBesidesIdleWorkers); got != goroutines {
		t.Errorf("goroutines: %d before %d cycles, %d after", goroutines, cycles, got)
	}
	t.Logf("%d connect/call/close cycles in %v; %d open files and %d goroutines before and after", cycles, elapsed.Round(time.Millisecond), fds, goroutines)
}

// goroutinesBesidesIdleWorkers counts this process's goroutines but the
// idle workers grpcipc.Server keeps for its handlers: a bounded pool, by
// design, that concurrent calls grow (not a leak per connection).
func goroutinesBesidesIdleWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, rest, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[chan receive") && strings.HasPrefix(rest, "github.com/grpcipc/grpcipc/internal/fastpath.(*workerPool).run.func1(") {
			continue
		}
		count++
	}
	return count
}

func TestServerKilledDuringStream(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	_, kill := startServeHelper(t, endpoint)
	conn := newClient(t, endpoint)
	ctx := ctxFor(t)
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := stream.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch message: %v, %v", first, err)
	}
	killed := time.Now()
	kill()
	_, err = stream.Recv()
	noticed := time.Since(killed)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("stream after SIGKILL: %v; want Unavailable", err)
	}
	if noticed > 2*time.Second {
		t.Errorf("the client took %v to see the server die", noticed)
	}
	// A new server replaces the stale socket; the same ClientConn gets
	// through again.
	stop, _ := startServeHelper(t, endpoint)
	defer stop()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := greetpb.NewGreeterClient(conn).SayHello(rctx, &greetpb.HelloRequest{Name: "again"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("the same ClientConn after the server came back: %v", err)
	}
	t.Logf("the client saw the kill in %v", noticed.Round(time.Microsecond))
}

// slowGreeter blocks "slow" calls until released or cancelled.
type slowGreeter struct {
	greetpb.UnimplementedGreeterServer
	entered   chan struct{}
	release   chan struct{}
	cancelled chan struct{}
}

func (g *slowGreeter) SayHello(ctx context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	if req.GetName() == "slow" {
		g.entered <- struct{}{}
		select {
		case <-g.release:
		case <-ctx.Done():
			g.cancelled <- struct{}{}
			return nil, ctx.Err()
		}
	}
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

// startSlowServer serves the slow greeter, made by grpcipc.NewServer with
// opts and logging to a buffer.
func startSlowServer(t *testing.T, opts ...grpcipc.ServerOption) (string, *grpcipc.Server, *slowGreeter, *syncBuffer) {
	t.Helper()
	endpoint := testutil.Endpoint(t)
	log := &syncBuffer{}
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	g := &slowGreeter{entered: make(chan struct{}, 1), release: make(chan struct{}), cancelled: make(chan struct{}, 1)}
	srv, err := grpcipc.NewServer(append(opts, grpcipc.WithLogger(slog.New(slog.NewTextHandler(log, nil))))...)
	if err != nil {
		t.Fatal(err)
	}
	greetpb.RegisterGreeterServer(srv, g)
	registerSink(srv)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return endpoint, srv, g, log
}

func TestGracefulStopFinishesInFlightCalls(t *testing.T) {
	endpoint, srv, g, _ := startSlowServer(t)
	conn := newClient(t, endpoint)
	client := greetpb.NewGreeterClient(conn)
	slow := make(chan error, 1)
	go func() {
		_, err := client.SayHello(ctxFor(t), &greetpb.HelloRequest{Name: "slow"})
		slow <- err
	}()
	<-g.entered
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	// New calls are refused while the in-flight one runs.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := greetpb.NewGreeterClient(newClient(t, endpoint)).SayHello(ctx, &greetpb.HelloRequest{Name: "new"})
		cancel()
		if status.Code(err) == codes.Unavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new call during GracefulStop: %v; want Unavailable", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned before the in-flight call finished")
	default:
	}
	close(g.release)
	if err := <-slow; err != nil {
		t.Errorf("the in-flight call: %v", err)
	}
	<-stopped
}

func TestClientCancelFreesServerWork(t *testing.T) {
	endpoint, _, g, _ := startSlowServer(t)
	client := greetpb.NewGreeterClient(newClient(t, endpoint))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := client.SayHello(ctx, &greetpb.HelloRequest{Name: "slow"})
		done <- err
	}()
	<-g.entered
	cancelled := time.Now()
	cancel()
	select {
	case <-g.cancelled:
		t.Logf("the handler saw the cancel in %v", time.Since(cancelled).Round(time.Microsecond))
	case <-time.After(2 * time.Second):
		t.Fatal("the server's handler was not told the client cancelled")
	}
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Errorf("the cancelled call: %v", err)
	}
}

// rawConn connects to a Unix socket endpoint without gRPC.
func rawConn(t *testing.T, endpoint string) net.Conn {
	t.Helper()
	c, err := grpcipc.Dial(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer waits for the server to close c.
func closedByServer(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the server did not close the connection within %v: %v", within, err)
	}
}

func TestBadInput(t *testing.T) {
	endpoint, _, _, log := startSlowServer(t, grpcipc.WithHandshakeTimeout(500*time.Millisecond))
	good := greetpb.NewGreeterClient(newClient(t, endpoint))
	stillServes := func() {
		t.Helper()
		if _, err := good.SayHello(ctxFor(t), &greetpb.HelloRequest{Name: "ok"}); err != nil {
			t.Fatalf("the server stopped serving others: %v", err)
		}
	}
	frame := func(length int, typ byte) []byte {
		return []byte{byte(length >> 16), byte(length >> 8), byte(length), typ, 0, 0, 0, 0, 1}
	}
	for _, tc := range []struct {
		name, log string
		send      []byte
	}{
		// Neither HTTP/2 nor grpcipc's fast path (whose magic also starts
		// with G).
		{"garbage", "its first bytes are neither HTTP/2's preface nor grpcipc's", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage")},
		{"truncated preface", "the HTTP/2 preface stopped after 16 bytes", []byte("PRI * HTTP/2.0\r\n")},
		{"oversized frame", "", append(append([]byte(http2PrefaceForTest), frame(0, 4)...), frame(1<<24-1, 0)...)},
		{"silent", "nothing received before the handshake timeout", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConn(t, endpoint)
			if tc.send != nil {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name == "truncated preface" {
				c.(*net.UnixConn).CloseWrite()
			}
			closedByServer(t, c, 5*time.Second)
			stillServes()
			if tc.log != "" {
				if got := settleLog(log, tc.log); !strings.Contains(got, tc.log) {
					t.Errorf("the server did not log %q:\n%s", tc.log, got)
				}
			}
		})
	}
	if n := strings.Count(log.String(), "connection dropped"); n != 3 {
		t.Errorf("%d log lines for 3 dropped connections:\n%s", n, log.String())
	}
}

const http2PrefaceForTest = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func settleLog(log *syncBuffer, want string) string {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return log.String()
}

func TestHalfOpenConnections(t *testing.T) {
	const n = 2000
	raiseFileLimit(t, 3*n+256)
	endpoint, _, _, _ := startSlowServer(t, grpcipc.WithHandshakeTimeout(time.Second))
	good := greetpb.NewGreeterClient(newClient(t, endpoint))
	if _, err := good.SayHello(ctxFor(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	fds := stable(func() int { return openFDs(t) })
	goroutines := stable(goroutinesBesidesIdleWorkers)
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := grpcipc.Dial(context.Background(), endpoint)
		if err != nil {
			t.Fatalf("after %d half-open connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	if _, err := good.SayHello(ctxFor(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatalf("with %d half-open connections the server stopped serving: %v", n, err)
	}
	// The handshake timeout closes every one of them.
	for _, c := range conns {
		closedByServer(t, c, 10*time.Second)
		c.Close()
	}
	if got := settle(fds, func() int { return openFDs(t) }); got != fds {
		t.Errorf("open files: %d before %d half-open connections, %d after", fds, n, got)
	}
	if got := settle(goroutines, goroutinesBesidesIdleWorkers); got != goroutines {
		t.Errorf("goroutines: %d before, %d after", goroutines, got)
	}
}

func TestOversizedMessage(t *testing.T) {
	endpoint, _, _, _ := startSlowServer(t)
	client := greetpb.NewGreeterClient(newClient(t, endpoint))
	_, err := client.SayHello(ctxFor(t), &greetpb.HelloRequest{Name: strings.Repeat("x", 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 5 MiB request: %v; want ResourceExhausted", err)
	}
	if _, err := client.SayHello(ctxFor(t), &greetpb.HelloRequest{Name: "small"}); err != nil {
		t.Errorf("after the oversized message: %v", err)
	}
}
