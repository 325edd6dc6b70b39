package fastpath

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// Attack (latency): a handler that runs inline leaves its connection
// unread, so the client's CANCEL of its call reaches it only once the
// watchdog gives the reading to a worker (one to two 10 ms ticks), where a
// reader used to see it at once. Measures, for calls cancelled while their
// handler waits on its context, the time from the client's cancel to the
// handler's context's end.
func TestAttackInlineHandlerSeesCancelLate(t *testing.T) {
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
