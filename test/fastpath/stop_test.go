package fastpath

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// TestFastPathServerRestart: a server stopped at once fails its call in
// flight with Unavailable; a new server on the same endpoint then serves
// the same ClientConn's next calls, with no other call failing.
func TestFastPathServerRestart(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			endpoint := testutil.Endpoint(t)
			svc := newFPService()
			first := fpServe(t, endpoint, svc)
			conn := fpConnect(t, endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)

			inFlight := make(chan error, 1)
			go func() {
				ctx, _ := fpCall(t, "slow")
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				inFlight <- err
			}()
			select {
			case <-svc.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the slow call did not start")
			}
			first.stop()
			select {
			case err := <-inFlight:
				e2e.WantCode(t, "the call in flight when the server stopped", err, codes.Unavailable)
			case <-time.After(5 * time.Second):
				t.Fatal("the call in flight did not end within 5 s of Stop")
			}

			fpServe(t, endpoint, svc)
			for i := range 3 {
				ctx, _ := fpCall(t, "")
				if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
					t.Fatalf("call %d on the same ClientConn after the restart: %v", i+1, err)
				}
			}
			ctx, _ := fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 3}}})
			if err == nil {
				_, err = recvAll(stream)
			}
			if err != nil {
				t.Errorf("a stream after the restart: %v", err)
			}
			if got := conn.Protocol(); got != p.want {
				t.Errorf("the client speaks %q after the restart, want %q", got, p.want)
			}
		})
	}
}

// TestFastPathGracefulStop: GracefulStop lets the call in flight finish
// with OK and returns only after it; calls started meanwhile get
// Unavailable; once a new server listens, calls on the same ClientConn
// are served by it.
func TestFastPathGracefulStop(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			endpoint := testutil.Endpoint(t)
			svc := newFPService()
			first := fpServe(t, endpoint, svc)
			conn := fpConnect(t, endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)

			inFlight := make(chan error, 1)
			go func() {
				ctx, _ := fpCall(t, "slow")
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 5})
				inFlight <- err
			}()
			select {
			case <-svc.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the slow call did not start")
			}
			// Callers keep calling while GracefulStop begins: each call is
			// served (it got in before the server began to stop) or gets
			// Unavailable (never run), and soon Unavailable. Several at
			// once, so that some call races the server's GOAWAY.
			const callers = 16
			var (
				wg      sync.WaitGroup
				served  atomic.Int64
				badMu   sync.Mutex
				bad     []string
				calling = make(chan struct{}, callers)
			)
			report := func(format string, args ...any) {
				badMu.Lock()
				defer badMu.Unlock()
				bad = append(bad, fmt.Sprintf(format, args...))
			}
			began := time.Now()
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						if i == 1 {
							calling <- struct{}{}
						}
						ctx, id := fpCall(t, "")
						ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
						_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
						cancel()
						// On Windows a named pipe whose server is going away
						// can stay busy, and the dialer waits for it (go-winio
						// retries ERROR_PIPE_BUSY until the deadline), on both
						// protocols: there a call that never ran may end with
						// DeadlineExceeded instead.
						notRun := status.Code(err) == codes.Unavailable ||
							runtime.GOOS == "windows" && status.Code(err) == codes.DeadlineExceeded
						switch {
						case notRun:
							if svc.seenBy(id) != nil {
								report("a call that failed with Unavailable (%v) ran on the server", err)
							}
							if i == 0 {
								calling <- struct{}{}
							}
							return
						case err != nil:
							report("a call during GracefulStop: %v; want OK or Unavailable", err)
							if i == 0 {
								calling <- struct{}{}
							}
							return
						}
						served.Add(1)
						if time.Since(began) > 5*time.Second {
							report("calls were still served 5 s into GracefulStop")
							return
						}
					}
				}()
			}
			for range callers {
				<-calling // every caller has made a call
			}
			stopped := make(chan struct{})
			go func() { first.srv.GracefulStop(); close(stopped) }()
			wg.Wait()
			for _, b := range bad {
				t.Error(b)
			}
			t.Logf("%d calls served in all, %v after GracefulStop began", served.Load(), time.Since(began).Round(time.Millisecond))
			select {
			case <-stopped:
				t.Fatal("GracefulStop returned while a call was in flight")
			case <-time.After(50 * time.Millisecond):
			}
			close(svc.release)
			select {
			case err := <-inFlight:
				if err != nil {
					t.Errorf("the call in flight during GracefulStop: %v; want OK", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the call in flight did not end within 5 s of its release")
			}
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("GracefulStop did not return within 5 s of the last call's end")
			}
			<-first.done

			// Restarted: a call gets Unavailable (the client may still be
			// backing off) or is served; with WaitForReady, served.
			fpServe(t, endpoint, newFPService())
			ctx, _ := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			if c := status.Code(err); c != codes.OK && c != codes.Unavailable {
				t.Errorf("the first call after the restart: %v; want OK or Unavailable", err)
			}
			t.Logf("the first call after the restart: %v", status.Code(err))
			ctx, _ = fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
				t.Errorf("a WaitForReady call after the restart: %v", err)
			}
			if got := conn.Protocol(); got != p.want {
				t.Errorf("the client speaks %q after the restart, want %q", got, p.want)
			}
		})
	}
}
