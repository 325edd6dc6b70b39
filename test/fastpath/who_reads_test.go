package fastpath

// A unary call alone on its connection reads its own reply, and its
// handler runs on the server goroutine that read its request
// (docs/protocol.md, "Who reads"). These tests hold that to what the
// goroutines that used to read promised: cancellation and deadlines act at
// once, a slow handler holds up no other call, and nothing is lost when
// calls come and go at once.

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// TestLoneCallCancelledWhileWaiting: a call alone on its connection,
// waiting for a reply that does not come, ends at once when its context is
// cancelled or its deadline passes; the server's handler sees the end; the
// connection stays good for the calls that follow (the read cut short
// resumes where it stopped).
func TestLoneCallCancelledWhileWaiting(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			env := fpServe(t, testutil.Endpoint(t), newFPService())
			conn := fpConnect(t, env.endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)
			for _, how := range []string{"cancel", "deadline"} {
				base, _ := fpCall(t, "wait-cancel")
				ctx, cancel := context.WithCancel(base)
				want := codes.Canceled
				if how == "deadline" {
					ctx, cancel = context.WithTimeout(base, 300*time.Millisecond)
					want = codes.DeadlineExceeded
				}
				ended := make(chan error, 1)
				go func() {
					_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
					ended <- err
				}()
				select {
				case <-env.svc.entered:
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: the handler did not start", how)
				}
				if how == "cancel" {
					cancel()
				}
				select {
				case err := <-ended:
					e2e.WantCode(t, how+": the call", err, want)
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: the call did not end within 5 s of its context", how)
				}
				cancel()
				select {
				case err := <-env.svc.ctxEnded:
					if err == nil {
						t.Errorf("%s: the handler's context never ended", how)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: the handler did not end", how)
				}
				for i := range 3 {
					c, _ := fpCall(t, "")
					if _, err := client.UnaryCall(c, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
						t.Fatalf("%s: call %d after it on the same connection: %v", how, i+1, err)
					}
				}
			}
		})
	}
}

// TestCallNotHeldBySlowHandler: while the handler of a call that was alone
// on its connection blocks, calls that come meanwhile on the same
// connection are answered; the blocked call ends well once released.
func TestCallNotHeldBySlowHandler(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			svc := newFPService()
			env := fpServe(t, testutil.Endpoint(t), svc)
			conn := fpConnect(t, env.endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)
			slow := make(chan error, 1)
			go func() {
				ctx, _ := fpCall(t, "slow")
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				slow <- err
			}()
			select {
			case <-svc.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the slow handler did not start")
			}
			for i := range 5 {
				ctx, _ := fpCall(t, "")
				if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
					t.Fatalf("call %d while a slow handler blocks: %v", i+1, err)
				}
				ctx, _ = fpCall(t, "")
				if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
					t.Fatalf("another method's call %d while a slow handler blocks: %v", i+1, err)
				}
			}
			select {
			case err := <-slow:
				t.Fatalf("the slow call ended before it was released: %v", err)
			default:
			}
			close(svc.release)
			select {
			case err := <-slow:
				if err != nil {
					t.Errorf("the slow call, released: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the slow call did not end once released")
			}
		})
	}
}

// TestCallsComeAndGo: callers that start and stop at random, alone and
// together, unary calls with and without deadlines that pass, streams
// among them: every call that should succeed does, the others fail with
// their deadline, and nothing is left behind.
func TestCallsComeAndGo(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			env := fpServe(t, testutil.Endpoint(t), newFPService())
			conn := fpConnect(t, env.endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)
			const callers = 6
			until := time.Now().Add(1500 * time.Millisecond)
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(i), 7))
					for n := 0; time.Now().Before(until); n++ {
						if err := randomCall(t, client, r); err != nil {
							errs <- err
							return
						}
						if r.IntN(4) == 0 {
							time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			ctx, _ := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 1}); err != nil {
				t.Errorf("a call after all: %v", err)
			}
		})
	}
}

// randomCall makes one call of a random kind: a unary call (its reply 0 to
// 3 MiB: over 1 MiB, it goes in parts), one whose deadline passes while
// the handler waits, or a server stream.
func randomCall(t *testing.T, client testgrpc.TestServiceClient, r *rand.Rand) error {
	switch r.IntN(10) {
	case 0:
		ctx, _ := fpCall(t, "hang")
		ctx, cancel := context.WithTimeout(ctx, time.Duration(1+r.IntN(5))*time.Millisecond)
		defer cancel()
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			return errors.New("a call whose deadline passed: " + status.Convert(err).String())
		}
		return nil
	case 1:
		ctx, _ := fpCall(t, "")
		stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 70 << 10}, {Size: 1}}})
		if err == nil {
			_, err = recvAll(stream)
		}
		if err != nil {
			return errors.New("a stream: " + err.Error())
		}
		return nil
	}
	size := int32(r.IntN(2000))
	if r.IntN(20) == 0 {
		size = int32(r.IntN(3 << 20))
	}
	ctx, _ := fpCall(t, "")
	reply, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: size})
	if err != nil {
		return errors.New("a unary call: " + err.Error())
	}
	if got := len(reply.GetPayload().GetBody()); got != int(size) {
		return errors.New("a unary call's reply has the wrong size")
	}
	return nil
}
