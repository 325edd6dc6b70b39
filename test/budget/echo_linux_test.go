package budget

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testhooks"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Heavy traffic both ways: N bidi echo streams, each sending M messages
// of S bytes while reading the echoes. Looks for reader/writer deadlocks
// (each side's reader writes WINDOW frames for parts).
func TestEchoBothWaysFitsTheBudget(t *testing.T) {
	endpoint, s := serveBig(t)
	for _, proto := range []string{"fast", "http2"} {
		for _, c := range []struct{ n, m, size int }{{8, 4, 4<<20 - 16}, {12, 4, 4<<20 - 16}} {
			t.Run(fmt.Sprintf("%s-%dx%dx%d", proto, c.n, c.m, c.size), func(t *testing.T) {
				var copts []grpcipc.ClientOption
				if proto == "http2" {
					copts = append(copts, grpcipc.WithHTTP2())
				}
				conn := e2e.NewClient(t, endpoint, copts...)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				start := time.Now()
				var wg sync.WaitGroup
				errs := make(chan error, c.n)
				for range c.n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						st, err := conn.NewStream(ctx, &bigDesc.Streams[1], bigEcho)
						if err != nil {
							errs <- err
							return
						}
						go func() {
							m := &wrapperspb.BytesValue{Value: make([]byte, c.size)}
							for range c.m {
								if st.SendMsg(m) != nil {
									break
								}
							}
							st.CloseSend()
						}()
						got := 0
						for {
							var m wrapperspb.BytesValue
							if err = st.RecvMsg(&m); err != nil {
								break
							}
							got++
						}
						if err == io.EOF && got == c.m {
							err = nil
						} else if err == io.EOF {
							err = fmt.Errorf("got %d of %d", got, c.m)
						}
						errs <- err
					}()
				}
				wg.Wait()
				close(errs)
				byCode := map[codes.Code]int{}
				var first error
				for err := range errs {
					byCode[status.Code(err)]++
					if err != nil && first == nil {
						first = err
					}
				}
				time.Sleep(200 * time.Millisecond)
				after, _ := testhooks.BudgetsInUse(s)
				t.Logf("%s: %d echo streams x %d msgs of %d: %v in %v; first err %.200v; client budget %d, server %v",
					proto, c.n, c.m, c.size, byCode, time.Since(start).Round(time.Millisecond), first, testhooks.ClientBudgetUsed(conn), after)
				if first != nil {
					t.Errorf("%d streams echoing 4 MiB messages both ways: %v; want all OK", c.n, byCode)
				}
			})
		}
	}
}
