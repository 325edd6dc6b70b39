package fastpath

import (
	"context"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

// Pre-existing, outside 401495a (found by accident): Stop before Serve,
// then Serve (which returns "the server has stopped"), then Stop again:
// the second Stop waits forever (server.go: serving is true, so it waits
// for h2done, which no Serve will close).
func TestAttackStopServeStop(t *testing.T) {
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
