package fastpath

import (
	"bufio"
	"context"
	"io"
	"math"
	"net"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

type fuzzGreeter struct {
	greetpb.UnimplementedGreeterServer
}

func (fuzzGreeter) SayHello(_ context.Context, r *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	return &greetpb.HelloReply{Message: "hello " + r.GetName()}, nil
}

// fuzzSeeds are byte sequences a client or a server might send after the
// preface: well-formed calls and replies, and their pieces.
func fuzzSeeds() [][]byte {
	req, _ := marshal(nil, &greetpb.HelloRequest{Name: "fuzz"})
	call := wire.AppendCall(nil, &wire.Call{Method: "/greet.Greeter/SayHello", Timeout: time.Second,
		Metadata: []wire.KV{{Key: "k", Value: "v"}, {Key: "k-bin", Value: "\x00\xff"}}})
	var client []byte
	client = wire.AppendFrame(client, 1, wire.TypeCall, 0, call)
	client = wire.AppendFrame(client, 1, wire.TypeMessage, 0, req)
	client = wire.AppendFrame(client, 1, wire.TypeHalfClose, 0, nil)
	client = wire.AppendFrame(client, 3, wire.TypeCall, 0, call)
	client = wire.AppendFrame(client, 3, wire.TypeMessage, wire.FlagMore, req[:2])
	client = wire.AppendFrame(client, 3, wire.TypeMessage, 0, req[2:])
	client = wire.AppendFrame(client, 3, wire.TypeWindow, 0, wire.AppendWindow(nil, 10))
	client = wire.AppendFrame(client, 3, wire.TypeCancel, 0, nil)
	client = wire.AppendFrame(client, 0, wire.TypePing, 0, make([]byte, 8))
	refused := wire.AppendCall(nil, &wire.Call{Method: "/greet.Greeter/Refused"})
	client = wire.AppendFrame(client, 5, wire.TypeCall, 0, refused)
	client = wire.AppendFrame(client, 5, wire.TypeHalfClose, 0, nil)
	var server []byte
	server = wire.AppendFrame(server, 1, wire.TypeHeaders, 0, wire.AppendMetadata(nil, []wire.KV{{Key: "h", Value: "1"}}))
	server = wire.AppendFrame(server, 1, wire.TypeMessage, 0, req)
	server = wire.AppendFrame(server, 1, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{Code: 5, Message: "nope", Metadata: []wire.KV{{Key: "t", Value: "2"}}}))
	server = wire.AppendFrame(server, 1, wire.TypeWindow, 0, wire.AppendWindow(nil, 1))
	server = wire.AppendFrame(server, 0, wire.TypeGoAway, 0, wire.AppendGoAway(nil, &wire.GoAway{LastStream: 0, Code: 14, Message: "bye"}))
	return [][]byte{client, server, client[:25], server[:40], nil}
}

// fuzzCaller is an admitted connection to a fuzzed server: it admits
// every method but /greet.Greeter/Refused, so that both handlers and
// refusals are fuzzed.
type fuzzCaller struct{ net.Conn }

func (fuzzCaller) AuthInfo() credentials.AuthInfo { return nil }
func (fuzzCaller) BudgetKey() string              { return "unknown" }
func (fuzzCaller) Warn(string, ...any)            {}
func (fuzzCaller) Authorize(method string) error {
	if method == "/greet.Greeter/Refused" {
		return status.Error(codes.PermissionDenied, "refused")
	}
	return nil
}

// FuzzServerConn feeds a fast-path server connection whatever a client
// might send: it must neither panic nor hang, and must end when the
// client goes away.
func FuzzServerConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	srv := NewServer(ServerConfig{MaxRecv: 4 << 20, MaxSend: math.MaxInt32, ConnBudget: 64 << 20, CallerBudget: 256 << 20, FrameTimeout: 10 * time.Second})
	greetpb.RegisterGreeterServer(srv, fuzzGreeter{})
	f.Cleanup(func() {
		srv.Shutdown(false)
		srv.Close()
	})
	f.Fuzz(func(t *testing.T, input []byte) {
		cEnd, sEnd := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.Serve(sEnd, fuzzCaller{sEnd}, wire.Version, nil)
			// Reading may have moved to another goroutine: the
			// connection has ended once the server forgets it.
			srv.mu.Lock()
			for len(srv.conns) > 0 {
				srv.connsIdle.Wait()
			}
			srv.mu.Unlock()
		}()
		go io.Copy(io.Discard, cEnd) // the server's replies
		cEnd.SetDeadline(time.Now().Add(5 * time.Second))
		cEnd.Write(input)
		cEnd.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the server's connection did not end after its client left (input %q)", input)
		}
	})
}

// FuzzClientConn feeds a fast-path client connection whatever a server
// might send while a call waits: the call must end, and nothing panics.
func FuzzClientConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		cEnd, sEnd := net.Pipe()
		fc := newClientConn(cEnd, bufio.NewReader(cEnd), wire.Version, ClientConfig{Budget: 64 << 20})
		if len(input)%2 == 1 {
			fc.ensureReader() // a background reader; else the call reads for itself
		}
		go io.Copy(io.Discard, sEnd) // the client's frames
		ended := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var reply greetpb.HelloReply
			ci := CallInfo{maxRecv: 4 << 20, maxSend: 1 << 20}
			ended <- fc.Invoke(ctx, "/greet.Greeter/SayHello", &greetpb.HelloRequest{Name: "fuzz"}, &reply, &ci)
		}()
		sEnd.SetDeadline(time.Now().Add(5 * time.Second))
		sEnd.Write(input)
		sEnd.Close()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("a call did not end after its server left (input %q)", input)
		}
		fc.Close(nil)
	})
}
