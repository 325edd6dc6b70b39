package budget

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A test service: Big/Stream sends count messages of size bytes
// (request: Int64Value count<<32|size); Big/Echo echoes each message.
const (
	bigStream = "/grpcipc.test.Big/Stream"
	bigEcho   = "/grpcipc.test.Big/Echo"
)

var bigDesc = grpc.ServiceDesc{
	ServiceName: "grpcipc.test.Big",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Stream", ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			var req wrapperspb.Int64Value
			if err := ss.RecvMsg(&req); err != nil {
				return err
			}
			count, size := int(req.Value>>32), int(req.Value&0xffffffff)
			m := &wrapperspb.BytesValue{Value: make([]byte, size)}
			for range count {
				if err := ss.SendMsg(m); err != nil {
					return err
				}
			}
			return nil
		},
	}, {
		StreamName: "Echo", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				var m wrapperspb.BytesValue
				if err := ss.RecvMsg(&m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if err := ss.SendMsg(&m); err != nil {
					return err
				}
			}
		},
	}},
}

// serveBig serves Sink, Up, Greeter and Big with opts on a new abstract
// endpoint and returns the *Server.
func serveBig(t *testing.T, opts ...grpcipc.ServerOption) (string, *grpcipc.Server) {
	t.Helper()
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	var lopts []grpcipc.ListenOption
	for _, o := range opts {
		if p, ok := o.(grpcipc.PolicyOption); ok {
			lopts = append(lopts, p)
		}
	}
	l, err := grpcipc.Listen(context.Background(), endpoint, lopts...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := grpcipc.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	e2e.RegisterSink(s)
	s.RegisterService(&uploadDesc, struct{}{})
	s.RegisterService(&bigDesc, struct{}{})
	greetpb.RegisterGreeterServer(s, &e2e.CountingServer{})
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return endpoint, s
}

// bigStreamCall opens Big/Stream for count messages of size bytes.
func bigStreamCall(ctx context.Context, conn grpc.ClientConnInterface, count, size int) (grpc.ClientStream, error) {
	st, err := conn.NewStream(ctx, &bigDesc.Streams[0], bigStream)
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(wrapperspb.Int64(int64(count)<<32 | int64(size))); err != nil {
		return nil, err
	}
	return st, st.CloseSend()
}

// zeros is the payload of big frames.
var zeros = make([]byte, 1<<20)

// make16MiB is 16 MiB of printable bytes.
func make16MiB() []byte { return []byte(strings.Repeat("v", 16<<20)) }

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// budgetOverhead is what a connection's attack may cost beyond its budget:
// the frame reader's buffers (1 MiB and 64 KiB, 32 KiB buffered), the
// writer's queue, streams' state and goroutines, and the test's samples.
const budgetOverhead = 24 << 20

const MiB = 1 << 20

// serveOneFast plays a fast-path server on the Unix address addr for one
// connection: it prints "ready" once listening, accepts, reads the
// client's preface and answers with its own, and returns the connection
// with the stream ids of the calls the client opens, as they come (the
// channel closes when the connection does).
func serveOneFast(addr string) (net.Conn, <-chan uint32, error) {
	l, err := net.Listen("unix", addr)
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	fmt.Println("ready")
	c, err := l.Accept()
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	var preface [wire.OfferSize]byte
	if _, err := io.ReadFull(br, preface[:]); err != nil {
		c.Close()
		return nil, nil, err
	}
	if _, err := c.Write(wire.AppendPreface(nil, wire.Version)); err != nil {
		c.Close()
		return nil, nil, err
	}
	calls := make(chan uint32, 1024)
	go func() {
		defer close(calls)
		r := wire.NewReader(br, wire.DefaultMaxFrame)
		for {
			h, _, err := r.Next()
			if err != nil {
				return
			}
			if h.Type == wire.TypeCall {
				calls <- h.Stream
			}
		}
	}()
	return c, calls, nil
}
