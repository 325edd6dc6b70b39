package reliability

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
)

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

func TestLoadThousandConnections(t *testing.T) {
	const conns, callsEach = 1000, 5
	raiseFileLimit(t, 4*conns+256)
	endpoint := testutil.Endpoint(t)
	stop, _ := startServeHelper(t, endpoint)
	defer stop()

	clients := make([]*grpcipc.ClientConn, conns)
	for i := range clients {
		clients[i] = e2e.NewClient(t, endpoint)
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

func TestConnectCallCloseCycles(t *testing.T) {
	const cycles, workers = 10000, 4
	endpoint := testutil.Endpoint(t)
	e2e.StartServer(t, endpoint)
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
	fds := e2e.Stable(func() int { return openFDs(t) })
	goroutines := e2e.Stable(e2e.GoroutinesBesidesIdleWorkers)

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
	if got := e2e.Settle(fds, func() int { return openFDs(t) }); got != fds {
		t.Errorf("open files: %d before %d cycles, %d after", fds, cycles, got)
	}
	if got := e2e.SettleTo(goroutines, e2e.GoroutinesBesidesIdleWorkers); got != goroutines {
		t.Errorf("goroutines: %d before %d cycles, %d after", goroutines, cycles, got)
	}
	t.Logf("%d connect/call/close cycles in %v; %d open files and %d goroutines before and after", cycles, elapsed.Round(time.Millisecond), fds, goroutines)
}

func TestHalfOpenConnections(t *testing.T) {
	const n = 2000
	raiseFileLimit(t, 3*n+256)
	endpoint, _, _, _ := e2e.StartSlowServer(t, grpcipc.WithHandshakeTimeout(time.Second))
	good := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint))
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	fds := e2e.Stable(func() int { return openFDs(t) })
	goroutines := e2e.Stable(e2e.GoroutinesBesidesIdleWorkers)
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := grpcipc.Dial(context.Background(), endpoint)
		if err != nil {
			t.Fatalf("after %d half-open connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatalf("with %d half-open connections the server stopped serving: %v", n, err)
	}
	// The handshake timeout closes every one of them.
	for _, c := range conns {
		closedByServer(t, c, 10*time.Second)
		c.Close()
	}
	if got := e2e.Settle(fds, func() int { return openFDs(t) }); got != fds {
		t.Errorf("open files: %d before %d half-open connections, %d after", fds, n, got)
	}
	if got := e2e.SettleTo(goroutines, e2e.GoroutinesBesidesIdleWorkers); got != goroutines {
		t.Errorf("goroutines: %d before, %d after", goroutines, got)
	}
}
