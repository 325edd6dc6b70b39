package fastpath

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// waitService's UnaryCall waits 300 µs (as for a database, another
// process): a method that is not slow (under 1 ms), but whose calls gain
// everything from running side by side.
type waitService struct {
	testgrpc.UnimplementedTestServiceServer
	running, peak atomic.Int32
}

func (s *waitService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

func (s *waitService) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	n := s.running.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	// Waits, yielding (time.Sleep may take a whole millisecond here).
	for start := time.Now(); time.Since(start) < 300*time.Microsecond; {
		runtime.Gosched()
	}
	s.running.Add(-1)
	return &testgrpc.SimpleResponse{}, nil
}

// Many callers on one connection of a method whose handlers wait a few
// hundred µs: their requests come together, and a batch would run them
// one after the other on the reading goroutine, batch after batch (each
// call alone over a batch's 100 µs), no handler ever long enough for the
// watchdog. Their handlers must run side by side, as on workers.
func TestBatchDoesNotSerializeWaitingHandlers(t *testing.T) {
	svc := &waitService{}
	l := testutil.Endpoint(t)
	srv, err := grpcipc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, svc)
	lis, err := grpcipc.Listen(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	conn := fpConnect(t, l, fpProtocols[0])
	client := testgrpc.NewTestServiceClient(conn)
	for range 20 { // the method's average: a few hundred µs
		if _, err := client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	svc.peak.Store(0)
	var calls atomic.Int64
	stop := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for range manyCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d callers of a 300 µs handler for 1 s: %d calls, at most %d handlers at once", manyCallers, calls.Load(), svc.peak.Load())
	// Side by side, tens of handlers wait at once; one after the other, 1
	// (2 while the watchdog takes the reading from one).
	if p := svc.peak.Load(); p < manyCallers/4 {
		t.Errorf("at most %d handlers ran at once among %d callers: the reader ran them one after the other", p, manyCallers)
	}
}
