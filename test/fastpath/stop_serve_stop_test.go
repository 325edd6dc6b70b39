package fastpath

import (
	"context"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

// Stop before Serve, then Serve (which returns ErrServerStopped), then Stop
// again: the second Stop returns. (Found by an attack round: it waited
// forever for an HTTP/2 server that never started.)
func TestStopServeStop(t *testing.T) {
	l, err := grpcipc.Listen(context.Background(), testutil.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcipc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := srv.Serve(l); err == nil {
		t.Fatal("Serve after Stop returned nil")
	}
	ret := make(chan struct{})
	go func() { srv.Stop(); close(ret) }()
	select {
	case <-ret:
	case <-time.After(3 * time.Second):
		t.Fatal("the second Stop did not return within 3 s")
	}
}
