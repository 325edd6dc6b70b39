package client

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testhooks"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// countingClient is a grpcipc client of endpoint whose every connection
// attempt (a real dial of the socket) is counted.
func countingClient(t *testing.T, endpoint string) (*grpcipc.ClientConn, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	newClientWithDialer := testhooks.NewClientWithDialer.(func(string, func(context.Context) (net.Conn, error), ...grpcipc.ClientOption) (*grpcipc.ClientConn, error))
	conn, err := newClientWithDialer(endpoint, func(ctx context.Context) (net.Conn, error) {
		n.Add(1)
		return grpcipc.Dial(ctx, endpoint)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, &n
}

// startDemo serves the demo services on endpoint; stop stops it.
func startDemo(t *testing.T, endpoint string) (stop func()) {
	t.Helper()
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := demo.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.CompareAndSwap(false, true) {
			srv.Stop()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func helloWithin(conn grpc.ClientConnInterface, d time.Duration, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "x"}, opts...)
	return err
}

// TestReconnectBackoff: while the server is down, calls that do not wait
// for ready fail at once with UNAVAILABLE naming the dial's error, and the
// client dials as grpc-go does (1 s after a failure, then longer), not once
// per call; a call that waits for ready reaches a server that comes back
// during it; a connection made resets the backoff.
func TestReconnectBackoff(t *testing.T) {
	endpoint := "unix://" + filepath.Join(testutil.ShortTempDir(t), "r.sock")

	t.Run("fail fast, dial seldom", func(t *testing.T) {
		conn, dials := countingClient(t, endpoint)
		calls, start := 0, time.Now()
		var slowest time.Duration
		for time.Since(start) < time.Second {
			t0 := time.Now()
			err := helloWithin(conn, 100*time.Millisecond)
			slowest = max(slowest, time.Since(t0))
			calls++
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "connect") {
				t.Fatalf("call %d: %v, want UNAVAILABLE naming the dial's error", calls, err)
			}
		}
		t.Logf("%d calls in 1 s against no server: %d connection attempts; the slowest call took %v", calls, dials.Load(), slowest)
		// grpc-go's backoff: an attempt at once, the next 0.8-1.2 s later.
		if n := dials.Load(); n > 3 {
			t.Errorf("%d connection attempts in 1 s, want at most 3", n)
		}
		if calls < 100 {
			t.Errorf("only %d calls in 1 s: calls that do not wait for ready should fail at once", calls)
		}
	})

	t.Run("wait for ready reaches a restarted server", func(t *testing.T) {
		conn, dials := countingClient(t, endpoint)
		started := make(chan time.Time, 1)
		go func() {
			time.Sleep(300 * time.Millisecond)
			startDemo(t, endpoint)
			started <- time.Now()
		}()
		t0 := time.Now()
		err := helloWithin(conn, 10*time.Second, grpc.WaitForReady(true))
		took := time.Since(t0)
		at := <-started
		if err != nil {
			t.Fatalf("WaitForReady call: %v (after %v)", err, took)
		}
		t.Logf("the WaitForReady call succeeded %v after the server started, after %d connection attempts", time.Since(at), dials.Load())
		if n := dials.Load(); n > 3 {
			t.Errorf("%d connection attempts, want at most 3", n)
		}
	})

	t.Run("a connection resets the backoff", func(t *testing.T) {
		path := filepath.Join(testutil.ShortTempDir(t), "s.sock")
		endpoint := "unix://" + path
		conn, dials := countingClient(t, endpoint)
		if err := helloWithin(conn, 50*time.Millisecond); status.Code(err) != codes.Unavailable {
			t.Fatalf("call with no server: %v", err)
		}
		stop := startDemo(t, endpoint)
		// The failure's backoff (about 1 s) holds the next dial back.
		if err := helloWithin(conn, 3*time.Second, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("WaitForReady call: %v", err)
		}
		if err := helloWithin(conn, time.Second); err != nil {
			t.Fatalf("call on the connection: %v", err)
		}
		stop()
		before := dials.Load()
		// The connection broke: the next call dials again at once.
		deadline := time.Now().Add(time.Second)
		for dials.Load() == before && time.Now().Before(deadline) {
			helloWithin(conn, 50*time.Millisecond)
		}
		if dials.Load() == before {
			t.Fatal("no dial within 1 s of the connection's end: the backoff was not reset")
		}
	})
}
