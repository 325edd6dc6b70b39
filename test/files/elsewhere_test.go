package files

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFilesWhereTheyCannotGo: over a connection that is not a Unix socket
// (a named pipe on Windows; TCP loopback elsewhere) a call with files fails
// with a status that says why, and is not sent; the same call without
// files is served. Sealed memory elsewhere than on Linux says it is
// unsupported.
func TestFilesWhereTheyCannotGo(t *testing.T) {
	endpoint := "tcp://127.0.0.1:0"
	opts := []grpcipc.ServerOption{grpcipc.WithMaxFilesPerCall(1), grpcipc.WithUnauthenticatedTCP()}
	if runtime.GOOS == "windows" {
		endpoint = testutil.Endpoint(t)
		opts = opts[:1]
	}
	srv, err := grpcipc.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	g := &readingGreeter{took: make(chan int, 10)}
	greetpb.RegisterGreeterServer(srv, g)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	defer func() { srv.Stop(); <-done }()
	if strings.HasPrefix(endpoint, "tcp:") {
		endpoint = "tcp://" + l.Addr().String()
	}
	client := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint))
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = client.SayHello(e2e.Context(t), &greetpb.HelloRequest{}, grpcipc.WithFiles(f))
	code := status.Code(err)
	if code != codes.FailedPrecondition && code != codes.Unimplemented || !strings.Contains(err.Error(), "was not sent") {
		t.Fatalf("a call with files over %s: %v", endpoint, err)
	}
	t.Logf("over %s: %v", endpoint, err)
	if _, err := client.SayHello(e2e.Context(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatalf("without files: %v", err)
	}
	if n := len(g.took); n != 1 {
		t.Fatalf("the server ran %d calls, want the one without files", n)
	}
	if runtime.GOOS != "linux" {
		if _, err := grpcipc.SealedFile("x", nil); err == nil || !strings.Contains(err.Error(), "Linux") {
			t.Errorf("SealedFile on %s: %v", runtime.GOOS, err)
		}
	}
}
