package budget

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testhooks"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func worstHello(ctx context.Context, conn grpc.ClientConnInterface, stop chan struct{}) chan time.Duration {
	lat := make(chan time.Duration, 1)
	go func() {
		var worst time.Duration
		gc := greetpb.NewGreeterClient(conn)
		for {
			select {
			case <-stop:
				lat <- worst
				return
			default:
			}
			t0 := time.Now()
			gc.SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
			worst = max(worst, time.Since(t0))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return lat
}

// K server handlers that do not read (Sink) while the client sends them
// 4 MiB messages; meanwhile 8 uploads of 2x4 MiB on the same ClientConn.
func TestStuckHandlersDoNotStarveOtherCalls(t *testing.T) {
	endpoint, s := serveBig(t)
	for _, proto := range []string{"fast", "http2"} {
		for _, k := range []int{8, 16} {
			t.Run(fmt.Sprintf("%s-stuck%d", proto, k), func(t *testing.T) {
				var copts []grpcipc.ClientOption
				if proto == "http2" {
					copts = append(copts, grpcipc.WithHTTP2())
				}
				conn := e2e.NewClient(t, endpoint, copts...)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if err := upload(ctx, conn, 10, 1); err != nil {
					t.Fatal(err)
				}
				sctx, scancel := context.WithCancel(ctx)
				var swg sync.WaitGroup
				sent := make([]int, k)
				for i := range k {
					swg.Add(1)
					go func() {
						defer swg.Done()
						st, err := conn.NewStream(sctx, &e2e.SinkDesc.Streams[0], e2e.SinkMethod)
						if err != nil {
							return
						}
						m := &wrapperspb.BytesValue{Value: make([]byte, 4<<20-16)}
						for st.SendMsg(m) == nil {
							sent[i]++
						}
					}()
				}
				time.Sleep(1500 * time.Millisecond)
				conns, _ := testhooks.BudgetsInUse(s)
				stopH := make(chan struct{})
				lat := worstHello(ctx, conn, stopH)
				start := time.Now()
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				durs := make(chan time.Duration, 8)
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						t0 := time.Now()
						errs <- upload(ctx, conn, 4<<20-16, 2)
						durs <- time.Since(t0)
					}()
				}
				wg.Wait()
				close(stopH)
				close(errs)
				close(durs)
				var worstU time.Duration
				for d := range durs {
					worstU = max(worstU, d)
				}
				byCode := map[codes.Code]int{}
				var first error
				for err := range errs {
					byCode[status.Code(err)]++
					if err != nil && first == nil {
						first = err
					}
				}
				scancel()
				swg.Wait()
				time.Sleep(300 * time.Millisecond)
				after, _ := testhooks.BudgetsInUse(s)
				t.Logf("%s, %d stuck streams (msgs sent into them %v), server conn budgets %v: 8 uploads of 2x4MiB in %v (worst %v): %v; worst SayHello %v; first err %.160v; budgets after cancel %v",
					proto, k, sent, conns, time.Since(start).Round(time.Millisecond), worstU.Round(time.Millisecond), byCode, (<-lat).Round(time.Millisecond), first, after)
				if first != nil {
					t.Errorf("with %d stuck streams, other calls on the connection failed: %v; want all OK (the stuck streams end first)", k, byCode)
				}
			})
		}
	}
}

// K server-streaming calls whose client does not read (4 MiB replies)
// while 8 other calls on the same ClientConn read 4x4 MiB replies.
func TestUnreadRepliesDoNotStarveOtherCalls(t *testing.T) {
	endpoint, s := serveBig(t)
	for _, proto := range []string{"fast", "http2"} {
		for _, k := range []int{8, 16} {
			t.Run(fmt.Sprintf("%s-stuck%d", proto, k), func(t *testing.T) {
				var copts []grpcipc.ClientOption
				if proto == "http2" {
					copts = append(copts, grpcipc.WithHTTP2())
				}
				conn := e2e.NewClient(t, endpoint, copts...)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if err := upload(ctx, conn, 10, 1); err != nil {
					t.Fatal(err)
				}
				sctx, scancel := context.WithCancel(ctx)
				for range k {
					if _, err := bigStreamCall(sctx, conn, 1000, 4<<20-16); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(1500 * time.Millisecond)
				cb := testhooks.ClientBudgetUsed(conn)
				stopH := make(chan struct{})
				lat := worstHello(ctx, conn, stopH)
				start := time.Now()
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				durs := make(chan time.Duration, 8)
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						t0 := time.Now()
						st, err := bigStreamCall(ctx, conn, 4, 4<<20-16)
						if err == nil {
							for {
								var m wrapperspb.BytesValue
								if err = st.RecvMsg(&m); err != nil {
									break
								}
							}
							if status.Code(err) == codes.OK {
								err = nil
							}
						}
						errs <- err
						durs <- time.Since(t0)
					}()
				}
				wg.Wait()
				close(stopH)
				close(errs)
				close(durs)
				var worstU time.Duration
				for d := range durs {
					worstU = max(worstU, d)
				}
				byCode := map[codes.Code]int{}
				var first error
				for err := range errs {
					if err != nil && err.Error() == "EOF" {
						err = nil
					}
					byCode[status.Code(err)]++
					if err != nil && first == nil {
						first = err
					}
				}
				scancel()
				time.Sleep(300 * time.Millisecond)
				after, _ := testhooks.BudgetsInUse(s)
				t.Logf("%s, %d unread streams, client budget %d: 8 calls of 4x4MiB replies in %v (worst %v): %v; worst SayHello %v; first err %.200v; client budget after cancel %d, server %v",
					proto, k, cb, time.Since(start).Round(time.Millisecond), worstU.Round(time.Millisecond), byCode, (<-lat).Round(time.Millisecond), first, testhooks.ClientBudgetUsed(conn), after)
				if first != nil {
					t.Errorf("with %d unread streams, other calls on the connection failed: %v; want all OK (the unread streams end first)", k, byCode)
				}
				if u := testhooks.ClientBudgetUsed(conn); proto == "fast" && u != 0 {
					t.Errorf("after every call ended, the client's budget holds %d bytes", u)
				}
			})
		}
	}
}

// Stop returns promptly while a reader waits for budget room.
func TestStopWhileWaitingForBudget(t *testing.T) {
	endpoint, s := serveBig(t)
	rf := e2e.DialFast(t, endpoint)
	go func() {
		for {
			if _, _, err := rf.R.Next(); err != nil {
				return
			}
		}
	}()
	var frames [][]byte
	for id := uint32(1); id <= 41; id += 2 {
		frames = append(frames, e2e.RawCallTo(id, e2e.SinkMethod))
		for range 4 {
			frames = append(frames, e2e.RawFrame(id, wire.TypeMessage, 0, zeros[:1<<20]))
		}
	}
	go rf.C.Write([]byte(strings.Join(func() []string {
		var ss []string
		for _, f := range frames {
			ss = append(ss, string(f))
		}
		return ss
	}(), "")))
	time.Sleep(300 * time.Millisecond)
	t.Logf("budget in use %d", connBudgetUsed(s))
	start := time.Now()
	s.Stop()
	t.Logf("Stop took %v", time.Since(start))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop took %v while a connection's reader waited for room in its budget", took)
	}
}
