package admission

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"
)

// grpc-go lets a server have one tap handle, and grpcipc's policy check is
// it: a second one given through WithGRPCServerOptions is an error that
// says so, not grpc-go's panic.
func TestTapHandleTaken(t *testing.T) {
	own := grpc.InTapHandle(func(ctx context.Context, _ *tap.Info) (context.Context, error) {
		return ctx, errors.New("never")
	})
	opt := grpcipc.WithGRPCServerOptions(grpc.MaxConcurrentStreams(10), own)
	if _, err := grpcipc.NewServer(opt); err == nil || !strings.Contains(err.Error(), "InTapHandle") {
		t.Errorf("NewServer with grpc.InTapHandle: %v; want an error naming it", err)
	}
	if _, err := grpcipc.ServerOptions(opt); err == nil || !strings.Contains(err.Error(), "InTapHandle") {
		t.Errorf("ServerOptions with grpc.InTapHandle: %v; want an error naming it", err)
	}
	s, err := grpcipc.NewServer(grpcipc.WithGRPCServerOptions(grpc.MaxConcurrentStreams(10)))
	if err != nil {
		t.Fatalf("NewServer with other grpc-go options: %v", err)
	}
	s.Stop()
}
