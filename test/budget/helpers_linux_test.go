package grpcipc_test

import (
	"context"
	"io"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
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
	registerSink(s)
	s.RegisterService(&uploadDesc, struct{}{})
	s.RegisterService(&bigDesc, struct{}{})
	greetpb.RegisterGreeterServer(s, &countingServer{})
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
