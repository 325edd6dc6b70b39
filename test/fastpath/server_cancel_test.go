package fastpath

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// A handler that waits on its context (a long poll) sees its client's
// cancel at once, but for the first such call of a method, which ran
// inline and waited for the watchdog (one to two 10 ms ticks): the method
// then runs on workers. Measured from the client's cancel to the handler's
// context's end, over calls of a method that is otherwise fast.
func TestInlineHandlerSeesCancelLate(t *testing.T) {
	svc := newFPService()
	env := fpServe(t, testutil.Endpoint(t), svc)
	conn := fpConnect(t, env.endpoint, fpProtocols[0])
	client := testgrpc.NewTestServiceClient(conn)
	var lat []time.Duration
	for range 10 {
		// Fast calls of the same method keep its average under 1 ms: it
		// runs inline.
		for range 40 {
			c, _ := fpCall(t, "")
			if _, err := client.UnaryCall(c, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
		}
		base, _ := fpCall(t, "wait-cancel")
		ctx, cancel := context.WithCancel(base)
		ended := make(chan error, 1)
		go func() {
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			ended <- err
		}()
		<-svc.entered
		time.Sleep(time.Millisecond)
		start := time.Now()
		cancel()
		<-svc.ctxEnded
		lat = append(lat, time.Since(start))
		<-ended
		time.Sleep(30 * time.Millisecond)
	}
	slices.Sort(lat)
	t.Logf("cancel to the handler's context's end: min %v, median %v, max %v", lat[0], lat[len(lat)/2], lat[len(lat)-1])
	if lat[len(lat)/2] > 5*time.Millisecond {
		t.Errorf("the median time from a client's cancel to its handler's context's end is %v", lat[len(lat)/2])
	}
}
