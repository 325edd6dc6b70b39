package files

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// fileService: UnaryCall reads the first file the client sent (its
// payload says what it held) and, when asked (ResponseSize > 0), sends a
// sealed memory file of that many bytes back; StreamingOutputCall does the
// same for each message it sends.
type fileService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (fileService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	got, err := readFirst(ctx)
	if err != nil {
		return nil, err
	}
	if n := req.GetResponseSize(); n > 0 {
		if err := sendSealed(ctx, int(n)); err != nil {
			return nil, err
		}
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: got}}, nil
}

func (fileService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	got, err := readFirst(stream.Context())
	if err != nil {
		return err
	}
	for _, p := range req.GetResponseParameters() {
		if err := sendSealed(stream.Context(), int(p.GetSize())); err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: got}}); err != nil {
			return err
		}
	}
	return nil
}

// readFirst takes the call's files, and returns what the first holds.
func readFirst(ctx context.Context) ([]byte, error) {
	files := grpcipc.TakeFiles(ctx)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) == 0 {
		return nil, nil
	}
	return io.ReadAll(io.LimitReader(files[0], 1<<20))
}

// sendSealed sends a sealed memory file of n bytes of 'x' with the response.
func sendSealed(ctx context.Context, n int) error {
	f, err := grpcipc.SealedFile("reply", bytes.Repeat([]byte{'x'}, n))
	if err != nil {
		return err
	}
	defer f.Close()
	return grpcipc.SendFiles(ctx, f)
}

// serveFiles serves fileService taking up to max files a call.
func serveFiles(t *testing.T, max int) string {
	t.Helper()
	endpoint := testutil.Endpoint(t)
	srv, err := grpcipc.NewServer(grpcipc.WithMaxFilesPerCall(max))
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, fileService{})
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return endpoint
}

// mapped checks that f is a sealed memory file of n bytes of 'x'.
func mapped(t *testing.T, f *os.File, n int) {
	t.Helper()
	m, err := grpcipc.MapFile(f)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !bytes.Equal(m.Bytes(), bytes.Repeat([]byte{'x'}, n)) {
		t.Fatalf("the file holds %d bytes, not %d of 'x'", len(m.Bytes()), n)
	}
}

// TestFilesBothWays: a client sends a pipe with a unary call and a
// server-streaming call; the handler reads it, and sends sealed memory
// back, which the client maps; thousands of calls later no descriptor
// is left open on either side (both in this process).
func TestFilesBothWays(t *testing.T) {
	endpoint := serveFiles(t, 2)
	conn := e2e.NewClient(t, endpoint)
	client := testgrpc.NewTestServiceClient(conn)
	ctx := e2e.Context(t)

	var got []*os.File
	reply, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 4096}, grpcipc.WithFiles(pipeWith(t, "hello")), grpcipc.ReceiveFiles(&got))
	if err != nil {
		t.Fatal(err)
	}
	if string(reply.GetPayload().GetBody()) != "hello" || len(got) != 1 {
		t.Fatalf("reply %q, %d files back", reply.GetPayload().GetBody(), len(got))
	}
	mapped(t, got[0], 4096)
	got[0].Close()

	var streamed []*os.File
	stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 1 << 20}, {Size: 3}},
	}, grpcipc.WithFiles(pipeWith(t, "streamed")), grpcipc.ReceiveFiles(&streamed))
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(m.GetPayload().GetBody()) != "streamed" {
			t.Fatalf("message %q", m.GetPayload().GetBody())
		}
	}
	if len(streamed) != 3 {
		t.Fatalf("%d files with the stream, want 3", len(streamed))
	}
	for i, n := range []int{10, 1 << 20, 3} {
		mapped(t, streamed[i], n)
		streamed[i].Close()
	}
	closeMine()

	// Thousands of calls: none leaves a descriptor behind.
	base := openFiles(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	for i := range 2000 {
		var back []*os.File
		if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: int32(i % 3)}, grpcipc.WithFiles(r, r), grpcipc.ReceiveFiles(&back)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		for _, f := range back {
			f.Close()
		}
	}
	r.Close()
	settleFiles(t, base)
}

// TestFilesRefusedByServer: a server that takes no files, or fewer,
// refuses the call before its handler runs; the client's files are its
// own still, and the server closes what it got.
func TestFilesRefusedByServer(t *testing.T) {
	for _, tc := range []struct {
		max, send int
		words     string
	}{
		{0, 1, "it carries 1 file, and this server takes none"},
		{2, 3, "it carries 3 files, and this server takes at most 2"},
	} {
		t.Run(fmt.Sprintf("%d of %d", tc.send, tc.max), func(t *testing.T) {
			endpoint := serveFiles(t, tc.max)
			client := testgrpc.NewTestServiceClient(e2e.NewClient(t, endpoint))
			f := pipeWith(t, "x")
			if _, err := client.UnaryCall(e2e.Context(t), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err) // connected: the connection's descriptors are counted below
			}
			base := openFiles(t)
			files := make([]*os.File, tc.send)
			for i := range files {
				files[i] = f
			}
			_, err := client.UnaryCall(e2e.Context(t), &testgrpc.SimpleRequest{}, grpcipc.WithFiles(files...))
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("%v, want FailedPrecondition saying %q", err, tc.words)
			}
			if _, err := f.Stat(); err != nil {
				t.Fatalf("the client's own file: %v", err)
			}
			settleFiles(t, base)
		})
	}
}

// TestFilesNotOverHTTP2: a call with files to a server that speaks only
// HTTP/2 fails and is not sent, through grpcipc's client and through a
// plain grpc-go client; so does a call through grpcipc's client over TCP.
func TestFilesNotOverHTTP2(t *testing.T) {
	path := testutil.ShortTempDir(t) + "/h2.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	calls := make(chan struct{}, 10)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls <- struct{}{}
		return h(ctx, req)
	}))
	testgrpc.RegisterTestServiceServer(srv, fileService{})
	go srv.Serve(l)
	defer srv.Stop()

	f := pipeWith(t, "x")
	ours := testgrpc.NewTestServiceClient(e2e.NewClient(t, "unix://"+path))
	plainConn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plainConn.Close()
	plain := testgrpc.NewTestServiceClient(plainConn)
	for name, c := range map[string]testgrpc.TestServiceClient{"grpcipc's client": ours, "a plain grpc-go client": plain} {
		_, err := c.UnaryCall(e2e.Context(t), &testgrpc.SimpleRequest{}, grpcipc.WithFiles(f))
		if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "travel only on grpcipc's fast path") {
			t.Errorf("%s over HTTP/2: %v, want Unimplemented saying why", name, err)
		}
		// Without files, the same client is served.
		if _, err := c.UnaryCall(e2e.Context(t), &testgrpc.SimpleRequest{}); err != nil {
			t.Errorf("%s: a call without files: %v", name, err)
		}
	}
	if n := len(calls); n != 2 {
		t.Errorf("the server ran %d calls, want the 2 without files", n)
	}
}

// TestSendFilesRefusals: a handler's SendFiles fails, sending nothing,
// when the client did not ask for files; the call goes on.
func TestSendFilesRefusals(t *testing.T) {
	endpoint := serveFiles(t, 1)
	client := testgrpc.NewTestServiceClient(e2e.NewClient(t, endpoint))
	_, err := client.UnaryCall(e2e.Context(t), &testgrpc.SimpleRequest{ResponseSize: 10})
	if err == nil || !strings.Contains(err.Error(), "its client did not ask for files (grpcipc.ReceiveFiles)") {
		t.Fatalf("SendFiles to a client that did not ask: %v", err)
	}
	var got []*os.File
	if _, err := client.UnaryCall(e2e.Context(t), &testgrpc.SimpleRequest{ResponseSize: 10}, grpcipc.ReceiveFiles(&got)); err != nil || len(got) != 1 {
		t.Fatalf("then with ReceiveFiles: %v, %d files", err, len(got))
	}
	got[0].Close()
}
