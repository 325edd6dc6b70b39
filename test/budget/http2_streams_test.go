package budget

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/echopb"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
)

// TestHTTP2StreamsBounded: a caller that opens streams and sends nothing
// holds at most 256 of them at once over HTTP/2, as on the fast path
// (grpc-go has no limit of its own: a red-team run held 20,000).
func TestHTTP2StreamsBounded(t *testing.T) {
	var active, most atomic.Int64
	release := make(chan struct{})
	hold := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		n := active.Add(1)
		defer active.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		return nil
	}
	endpoint := testutil.Endpoint(t)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := demo.NewServer(grpcipc.WithStreamInterceptor(hold))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Stop()
	conn := e2e.NewClient(t, endpoint, grpcipc.WithHTTP2())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const streams = 300
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, err := echopb.NewEchoClient(conn).Chat(ctx); err == nil {
				s.CloseSend()
				s.Recv()
			}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); active.Load() < 256 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for any over the limit to start
	if got := most.Load(); got != 256 {
		t.Errorf("at most %d streams ran at once over one HTTP/2 connection; want 256", got)
	}
	close(release)
	wg.Wait()
}
