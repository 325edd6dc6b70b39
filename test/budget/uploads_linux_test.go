package budget

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// An upload service: a client-streaming handler that reads every message.
const uploadMethod = "/grpcipc.test.Up/Load"

var uploadDesc = grpc.ServiceDesc{
	ServiceName: "grpcipc.test.Up",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Load", ClientStreams: true, ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				var m wrapperspb.BytesValue
				if err := ss.RecvMsg(&m); err == io.EOF {
					return ss.SendMsg(&emptypb.Empty{})
				} else if err != nil {
					return err
				}
			}
		},
	}, {
		StreamName: "First", ClientStreams: true, ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			var m wrapperspb.BytesValue
			if err := ss.RecvMsg(&m); err != nil {
				return err
			}
			return status.Error(codes.InvalidArgument, "one is enough")
		},
	}},
}

func upload(ctx context.Context, conn grpc.ClientConnInterface, size, msgs int) error {
	st, err := conn.NewStream(ctx, &uploadDesc.Streams[0], uploadMethod)
	if err != nil {
		return err
	}
	m := &wrapperspb.BytesValue{Value: make([]byte, size)}
	for range msgs {
		if err := st.SendMsg(m); err != nil {
			break
		}
	}
	st.CloseSend()
	return st.RecvMsg(&emptypb.Empty{})
}

// 64 concurrent 4 MiB uploads on one ClientConn, to handlers that
// read them, all succeed on the fast path as over HTTP/2: messages go out
// in parts one at a time, so the server never holds more halves than its
// budget can finish (a red-team run had 29 of 64 fail ResourceExhausted).
func TestConcurrentUploadsFitTheBudget(t *testing.T) {
	endpoint, _ := serveBig(t)
	for _, proto := range []string{"fast", "http2"} {
		for _, n := range []int{64} {
			t.Run(fmt.Sprintf("%s-%d", proto, n), func(t *testing.T) {
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
				for round := range 1 {
					start := time.Now()
					stopU := make(chan struct{})
					lat := make(chan time.Duration, 1)
					go func() {
						var worst time.Duration
						gc := greetpb.NewGreeterClient(conn)
						for {
							select {
							case <-stopU:
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
					var wg sync.WaitGroup
					errs := make(chan error, n)
					for range n {
						wg.Add(1)
						go func() {
							defer wg.Done()
							errs <- upload(ctx, conn, 4<<20-16, 1)
						}()
					}
					wg.Wait()
					close(stopU)
					worst := <-lat
					close(errs)
					byCode := map[codes.Code]int{}
					var first error
					for err := range errs {
						byCode[status.Code(err)]++
						if err != nil && first == nil {
							first = err
						}
					}
					t.Logf("round %d: %d uploads of 4 MiB in %v: %v; worst SayHello latency on the same conn %v; first error: %.80v", round, n, time.Since(start).Round(time.Millisecond), byCode, worst.Round(time.Millisecond), first)
					if first != nil {
						t.Errorf("%d concurrent 4 MiB uploads of a well-behaved client: %v; want all OK", n, byCode)
					}
				}
			})
		}
	}
}
