package fastpath

import (
	"context"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

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

// sleepService's UnaryCall sleeps 4 ms: under the watchdog's tick.
type sleepService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (sleepService) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	time.Sleep(4 * time.Millisecond)
	return &testgrpc.SimpleResponse{}, nil
}
