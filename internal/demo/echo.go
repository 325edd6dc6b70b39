package demo

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/grpcipc/grpcipc/examples/echopb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// echo is grpcipc.examples.v1.Echo (proto/grpcipc/examples/v1/echo.proto).
type echo struct {
	echopb.UnimplementedEchoServer
}

// maxRepeat bounds Expand's replies, so that a request cannot make the
// server stream forever.
const maxRepeat = 10000

// echoHeaders sends back the request metadata whose names start with
// "echo-" as response headers.
func echoHeaders(ctx context.Context) error {
	in, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for k, v := range in {
		if strings.HasPrefix(k, "echo-") {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return grpc.SetHeader(ctx, out)
}

// received sets the trailer that says how many requests the call read.
func received(ctx context.Context, n int) {
	grpc.SetTrailer(ctx, metadata.Pairs("echo-received", strconv.Itoa(n)))
}

// asked returns the error a request with fail_code asks for, or nil.
func asked(req *echopb.EchoRequest) error {
	code := req.GetFailCode()
	if code == 0 {
		return nil
	}
	if code < 1 || code > 16 {
		return status.Errorf(codes.InvalidArgument, "fail_code %d is not a gRPC status code (1 to 16)", code)
	}
	st, err := status.New(codes.Code(code), "failed as asked").WithDetails(&errdetails.ErrorInfo{
		Reason: "ASKED", Domain: "examples.grpcipc", Metadata: map[string]string{"text": req.GetText()},
	})
	if err != nil {
		return err
	}
	return st.Err()
}

func (echo) Say(ctx context.Context, req *echopb.EchoRequest) (*echopb.EchoReply, error) {
	if err := echoHeaders(ctx); err != nil {
		return nil, err
	}
	received(ctx, 1)
	if err := asked(req); err != nil {
		return nil, err
	}
	return &echopb.EchoReply{Text: req.GetText()}, nil
}

func (echo) Expand(req *echopb.EchoRequest, stream echopb.Echo_ExpandServer) error {
	ctx := stream.Context()
	if err := echoHeaders(ctx); err != nil {
		return err
	}
	received(ctx, 1)
	if err := asked(req); err != nil {
		return err
	}
	n := max(int(req.GetRepeat()), 1)
	if n > maxRepeat {
		return status.Errorf(codes.InvalidArgument, "repeat %d is more than %d", n, maxRepeat)
	}
	for i := range n {
		if err := stream.Send(&echopb.EchoReply{Text: req.GetText(), Index: int32(i)}); err != nil {
			return err
		}
	}
	return nil
}

func (echo) Collect(stream echopb.Echo_CollectServer) error {
	ctx := stream.Context()
	if err := echoHeaders(ctx); err != nil {
		return err
	}
	var texts []string
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := asked(req); err != nil {
			received(ctx, len(texts)+1)
			return err
		}
		texts = append(texts, req.GetText())
	}
	received(ctx, len(texts))
	return stream.SendAndClose(&echopb.EchoReply{Text: strings.Join(texts, " "), Index: int32(len(texts))})
}

func (echo) Chat(stream echopb.Echo_ChatServer) error {
	ctx := stream.Context()
	if err := echoHeaders(ctx); err != nil {
		return err
	}
	n := 0
	defer func() { received(ctx, n) }()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		n++
		if err := asked(req); err != nil {
			return err
		}
		if err := stream.Send(&echopb.EchoReply{Text: req.GetText(), Index: int32(n - 1)}); err != nil {
			return err
		}
	}
}
