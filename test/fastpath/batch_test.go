package fastpath

// Unary calls whose requests a server reads together run in turn on the
// goroutine that read them, their replies written together; a client's
// requests made while callers woken by their replies have yet to run are
// written together (docs/protocol.md, "Who reads"). These tests hold that
// to what calls run each on a goroutine of their own promised: a handler
// that blocks holds up no other call, cancellation acts at once, and
// replies of any size and calls of every kind among many callers on one
// connection all arrive.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// manyCallers is how many goroutines share one connection here: enough
// for a server's read to bring several requests at once.
const manyCallers = 32

// TestBatchNotHeldBySlowHandler: among many callers on one connection
// making fast calls of a method, one call of that method blocks in its
// handler; the other callers' calls go on being answered meanwhile, each
// within a bound far below the wait; the blocked call ends well once
// released, and one cancelled while it blocks ends at once.
func TestBatchNotHeldBySlowHandler(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			svc := newFPService()
			env := fpServe(t, testutil.Endpoint(t), svc)
			conn := fpConnect(t, env.endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var calls [manyCallers]atomic.Int64 // each caller's
			var longest atomic.Int64
			errs := make(chan error, manyCallers)
			for i := range manyCallers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						t0 := time.Now()
						if _, err := client.UnaryCall(e2e.Context(t), &testgrpc.SimpleRequest{ResponseSize: 100}); err != nil {
							errs <- err
							return
						}
						d := int64(time.Since(t0))
						for {
							m := longest.Load()
							if d <= m || longest.CompareAndSwap(m, d) {
								break
							}
						}
						calls[i].Add(1)
					}
				}()
			}
			defer func() {
				close(stop)
				wg.Wait()
			}()
			time.Sleep(200 * time.Millisecond) // the method is fast: its calls are gathered

			for _, how := range []string{"release", "cancel"} {
				ctx, _ := fpCall(t, "slow")
				ctx, cancel := context.WithCancel(ctx)
				slow := make(chan error, 1)
				go func() {
					_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100})
					slow <- err
				}()
				select {
				case <-svc.entered:
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: the slow handler did not start", how)
				}
				longest.Store(0)
				var before [manyCallers]int64
				for i := range calls {
					before[i] = calls[i].Load()
				}
				time.Sleep(time.Second)
				for i := range calls {
					if calls[i].Load() == before[i] {
						t.Errorf("%s: caller %d had no call answered in the second a handler blocked", how, i)
					}
				}
				// Each call waits at most for two of the watchdog's ticks
				// (20 ms), and for the machine: a blocked handler would hold
				// the calls of its batch for the whole second.
				if d := time.Duration(longest.Load()); d > 500*time.Millisecond {
					t.Errorf("%s: a call took %v while a handler blocked", how, d)
				}
				select {
				case err := <-slow:
					t.Fatalf("%s: the slow call ended before it was released: %v", how, err)
				default:
				}
				t0 := time.Now()
				if how == "cancel" {
					cancel()
				} else {
					svc.release <- struct{}{}
				}
				select {
				case err := <-slow:
					if how == "cancel" {
						e2e.WantCode(t, "the cancelled call", err, codes.Canceled)
						if d := time.Since(t0); d > 2*time.Second {
							t.Errorf("the cancelled call ended %v after its cancellation", d)
						}
					} else if err != nil {
						t.Errorf("the slow call, released: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: the slow call did not end", how)
				}
				cancel()
			}
			select {
			case err := <-errs:
				t.Fatalf("a fast call: %v", err)
			default:
			}
		})
	}
}

// TestManyCallersEveryKind: many callers on one connection make calls of
// every kind at random (replies from none to 3 MiB, which go in parts;
// calls whose deadlines pass while the handler waits; calls cancelled at
// random; streams): every call ends as it should, and the connection
// serves a call after all.
func TestManyCallersEveryKind(t *testing.T) {
	for _, p := range fpProtocols {
		t.Run(p.name, func(t *testing.T) {
			fpNoLeaks(t)
			env := fpServe(t, testutil.Endpoint(t), newFPService())
			conn := fpConnect(t, env.endpoint, p)
			client := testgrpc.NewTestServiceClient(conn)
			until := time.Now().Add(1500 * time.Millisecond)
			var wg sync.WaitGroup
			errs := make(chan error, manyCallers)
			for i := range manyCallers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(i), 11))
					for time.Now().Before(until) {
						var err error
						if r.IntN(8) == 0 {
							err = cancelledCall(t, client, r)
						} else {
							err = randomCall(t, client, r)
						}
						if err != nil {
							errs <- fmt.Errorf("caller %d: %w", i, err)
							return
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

// cancelledCall makes a call that waits in its handler and is cancelled
// after a random while: it ends with CANCELLED, at once.
func cancelledCall(t *testing.T, client testgrpc.TestServiceClient, r *rand.Rand) error {
	ctx, _ := fpCall(t, "hang")
	ctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(time.Duration(r.IntN(2000))*time.Microsecond, cancel)
	defer cancel()
	_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if code := status.Code(err); code != codes.Canceled {
		return errors.New("a cancelled call ended with " + code.String())
	}
	return nil
}
