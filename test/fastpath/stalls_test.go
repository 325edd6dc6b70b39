package fastpath

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	_ "google.golang.org/grpc/encoding/gzip"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// TestFastPathUnaryNotBlockedByStalledStream: a server stream whose
// client does not read fills its window and stops, and stops nothing
// else: many unary calls on the same connection at the same time all
// complete quickly.
func TestFastPathUnaryNotBlockedByStalledStream(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			env := fpServe(t, testutil.Endpoint(t), newFPService())
			conn := fpConnect(t, env.endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)
			sctx, _ := fpCall(t, "flood")
			sctx, cancel := context.WithCancel(sctx)
			defer cancel()
			stream, err := client.StreamingOutputCall(sctx, &testgrpc.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			last := fpWaitStalled(t, env.svc)
			t.Logf("the stream stalled after %d messages of 64 KiB (%d KiB)", last, last*64)

			const goroutines, each = 64, 10
			var wg sync.WaitGroup
			var failed atomic.Int64
			var firstErr atomic.Value
			began := time.Now()
			for range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100})
						cancel()
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(began)
			if n := failed.Load(); n > 0 {
				t.Errorf("%d of %d unary calls failed beside the stalled stream; the first: %v", n, goroutines*each, firstErr.Load())
			}
			if took > 5*time.Second {
				t.Errorf("%d unary calls beside a stalled stream took %v; want under 5 s", goroutines*each, took)
			}
			t.Logf("%d unary calls from %d goroutines beside the stalled stream: %v", goroutines*each, goroutines, took.Round(time.Millisecond))

			// The stalled stream still works: read a message, then cancel;
			// the handler's Send ends.
			if m, err := stream.Recv(); err != nil || len(m.GetPayload().GetBody()) != 64<<10 {
				t.Errorf("reading the stalled stream: %v", err)
			}
			cancel()
			select {
			case err := <-env.svc.floodDone:
				t.Logf("the flooding handler's Send ended with %v", err)
			case <-time.After(5 * time.Second):
				t.Error("the flooding handler was still sending 5 s after its client cancelled")
			}
			if got := conn.Protocol(); got != p.want {
				t.Errorf("the client speaks %q after, want %q", got, p.want)
			}
		})
	}
}

// fpWaitStalled waits for a "flood" handler to stop sending (its window
// is full, or it sent all it was asked to) and returns how many messages
// it sent.
func fpWaitStalled(t *testing.T, svc *fpService) int64 {
	t.Helper()
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(10 * time.Second); ; {
		n := svc.floodSent.Load()
		if n != last {
			last, since = n, time.Now()
		} else if n > 0 && time.Since(since) > 300*time.Millisecond {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never stopped sending to a client that does not read: %d messages", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFastPathStalledStreamIsBounded: a client that does not read a
// server stream holds at most the stream's window (4 MiB on both
// protocols, docs/protocol.md) and a message: the server's Send blocks
// there. With 1 MiB messages the server may send five or so before it
// stalls, not the 48 it would send to a client that read them.
func TestFastPathStalledStreamIsBounded(t *testing.T) {
	const msgSize, maxMsgs, window = 1 << 20, 48, 4 << 20
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			env := fpServe(t, testutil.Endpoint(t), newFPService())
			conn := fpConnect(t, env.endpoint, p)
			ctx, _ := fpCall(t, "flood")
			ctx = metadata.AppendToOutgoingContext(ctx, "x-flood-size", fmt.Sprint(msgSize), "x-flood-max", fmt.Sprint(maxMsgs))
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := testgrpc.NewTestServiceClient(conn).StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			n := fpWaitStalled(t, env.svc)
			t.Logf("the server sent %d messages of 1 MiB to a client that reads none before it stalled", n)
			// The window, one message in parts, and one grpc-go queues
			// beyond the window in its transport: 6 MiB.
			if n*msgSize > window+2*msgSize {
				t.Errorf("the server sent %d MiB on a stream whose client reads nothing, with a %d MiB window: the client buffers all of it", n, window>>20)
			}
			if m, err := stream.Recv(); err != nil || len(m.GetPayload().GetBody()) != msgSize {
				t.Errorf("reading the stalled stream: %v", err)
			}
			cancel()
			select {
			case <-env.svc.floodDone:
			case <-time.After(5 * time.Second):
				t.Error("the flooding handler did not end within 5 s of its client's cancel")
			}
		})
	}
}
