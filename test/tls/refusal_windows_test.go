package tls

import (
	"context"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// TestTLSClientCertificateRefusedPipe: over a named pipe, a TLS 1.3 client
// whose certificate the server refuses learns it from the call's error
// (the pipe's own "broken pipe" errors are recognised, as a socket's are).
func TestTLSClientCertificateRefusedPipe(t *testing.T) {
	server, err := grpcipc.NewKeyPair("server")
	if err != nil {
		t.Fatal(err)
	}
	client, err := grpcipc.NewKeyPair("client")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := grpcipc.NewKeyPair("stranger")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := testutil.Endpoint(t)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := demo.NewServer(grpcipc.WithTLS(server.TLSConfig()), grpcipc.WithPins(client.Pin))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })

	call := func(kp *grpcipc.KeyPair) error {
		conn := e2e.NewClient(t, endpoint, grpcipc.WithTLS(kp.TLSConfig()), grpcipc.WithPins(server.Pin))
		_, err := greetpb.NewGreeterClient(conn).SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "x"})
		return err
	}
	if err := call(client); err != nil {
		t.Fatalf("the pinned client: %v", err)
	}
	for range 5 {
		err := call(stranger)
		if err == nil || !strings.Contains(err.Error(), "the server refused this client's TLS certificate") {
			t.Errorf("a client whose certificate is not pinned: %v; want an error saying the server refused its certificate", err)
		}
	}
}
