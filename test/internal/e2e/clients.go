package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NewClient is grpcipc.NewClient, failing t on an error and closed when
// the test ends.
func NewClient(t *testing.T, endpoint string, opts ...grpcipc.ClientOption) *grpcipc.ClientConn {
	t.Helper()
	conn, err := grpcipc.NewClient(endpoint, opts...)
	if err != nil {
		t.Fatalf("NewClient(%s): %v", endpoint, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Context is a context for a test's calls: 10 s, cancelled when the test
// ends.
func Context(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// SayHello makes a client with opts and calls SayHello once.
func SayHello(t *testing.T, endpoint string, opts ...grpcipc.ClientOption) error {
	t.Helper()
	conn := NewClient(t, endpoint, opts...)
	_, err := greetpb.NewGreeterClient(conn).SayHello(Context(t), &greetpb.HelloRequest{Name: "x"})
	return err
}

// MustPolicy is grpcipc.ParsePolicy, failing t on an error.
func MustPolicy(t *testing.T, js string) *grpcipc.Policy {
	t.Helper()
	p, err := grpcipc.ParsePolicy([]byte(js))
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	return p
}

// MustPrincipal is grpcipc.ParsePrincipal, failing t on an error.
func MustPrincipal(t *testing.T, s string) grpcipc.Principal {
	t.Helper()
	p, err := grpcipc.ParsePrincipal(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// WantCode checks that err has the status code want.
func WantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: %v; want %v", what, err, want)
	}
}
