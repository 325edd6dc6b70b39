package fastpath

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// A unary call whose reply arrives as its context ends ends OK with its
// reply, or with its context's code; never otherwise. (Found by an attack
// round, older than the reader roles: the context's end could drain a
// reply that had ended the call, which then failed INTERNAL, "the server
// sent no response message".)
func TestReplyDrainedWhenContextEndsWithIt(t *testing.T) {
	env := fpServe(t, testutil.Endpoint(t), newFPService())
	conn := fpConnect(t, env.endpoint, fpProtocols[0])
	client := testgrpc.NewTestServiceClient(conn)
	r := rand.New(rand.NewPCG(1, 2))
	bad := 0
	var first error
	calls := 0
	for until := time.Now().Add(time.Second); time.Now().Before(until); calls++ {
		base, _ := fpCall(t, "")
		ctx, cancel := context.WithTimeout(base, time.Duration(r.IntN(300))*time.Microsecond)
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10})
		cancel()
		if c := status.Code(err); c != codes.OK && c != codes.DeadlineExceeded {
			bad++
			if first == nil {
				first = err
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d calls whose deadline came about with their reply failed otherwise; the first: %v", bad, calls, first)
	}
}
