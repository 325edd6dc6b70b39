package fastpath

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// Check: a client connection with no reader (between calls, before its
// idle watch brings one back) whose server stops, gracefully or not, and
// is replaced at once: the next call, within the idle watch, finds its
// write refused or the GOAWAY and goes to a new connection; it does not
// fail.
func TestServerReplacedWhileNoOneReads(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		name := "stop"
		if graceful {
			name = "graceful"
		}
		t.Run(name, func(t *testing.T) {
			name := testutil.AbstractName(t)
			endpoint := "unix-abstract:" + name
			serve := func() (*grpcipc.Server, chan struct{}) {
				l, err := net.Listen("unix", "@"+strings.TrimPrefix(endpoint, "unix-abstract:"))
				if err != nil {
					t.Fatal(err)
				}
				srv, err := grpcipc.NewServer()
				if err != nil {
					t.Fatal(err)
				}
				testgrpc.RegisterTestServiceServer(srv, newFPService())
				done := make(chan struct{})
				go func() { defer close(done); srv.Serve(l) }()
				return srv, done
			}
			srv, done := serve()
			conn := atkClient(t, endpoint)
			client := testgrpc.NewTestServiceClient(conn)
			for i := range 30 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
					t.Fatalf("round %d, the call before the stop: %v", i, err)
				}
				time.Sleep(time.Millisecond) // the reader retired
				if graceful {
					srv.GracefulStop()
				} else {
					srv.Stop()
				}
				<-done
				srv, done = serve()
				_, err := client.EmptyCall(ctx, &testgrpc.Empty{})
				cancel()
				if err != nil {
					t.Errorf("round %d, the call just after the server was replaced: %v", i, err)
				}
			}
			srv.Stop()
			<-done
		})
	}
}
