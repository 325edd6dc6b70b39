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
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
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

// sleepService's UnaryCall sleeps 4 ms: under the watchdog's tick.
type sleepService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (sleepService) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	time.Sleep(4 * time.Millisecond)
	return &testgrpc.SimpleResponse{}, nil
}

// A hostile (or merely first) client sends 64 calls of a method that
// has not run yet, so whose average is nought, in one write: all are
// gathered into one batch. Each handler takes 4 ms, never a whole tick
// of the watchdog: run in turn, the last would wait a quarter of a
// second, and nobody would read the connection meanwhile. A call waits
// for the others of its batch about 20 ms at most (docs/protocol.md).
func TestBatchOfColdMethodBounded(t *testing.T) {
	l := testutil.Endpoint(t)
	srv, err := grpcipc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, sleepService{})
	lis, err := grpcipc.Listen(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })

	rf := e2e.DialFast(t, l)
	const calls = 64
	var frames [][]byte
	for id := uint32(1); id <= calls; id++ {
		frames = append(frames,
			e2e.RawCallTo(id, "/grpc.testing.TestService/UnaryCall"),
			e2e.RawFrame(id, wire.TypeMessage, 0, nil),
			e2e.RawFrame(id, wire.TypeHalfClose, 0, nil))
	}
	start := time.Now()
	rf.Send(t, frames...)
	ended := 0
	for ended < calls {
		h, p, err := rf.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d calls ended: %v", ended, err)
		}
		if h.Type == wire.TypeTrailers {
			if tr, err := wire.ParseTrailer(p); err != nil || tr.Code != 0 {
				t.Fatalf("call %d: %+v, %v", h.Stream, tr, err)
			}
			ended++
		}
	}
	took := time.Since(start)
	t.Logf("%d calls of a 4 ms handler sent at once: all answered after %v", calls, took)
	if took > 150*time.Millisecond {
		t.Errorf("%d calls of a 4 ms handler sent at once took %v: they ran one after the other", calls, took)
	}
}
