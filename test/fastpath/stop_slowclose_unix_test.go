//go:build unix

package fastpath

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// slowCloseListener is a listener that takes a while to close, as one of
// the caller's own or systemd's may.
type slowCloseListener struct{ net.Listener }

func (l slowCloseListener) Close() error {
	time.Sleep(time.Second)
	return l.Listener.Close()
}

// TestNoCallStartsOnceStopBegan (Unix: it needs a listener of its own
// that is slow to close, a Unix socket): a connection that arrives while Stop or
// GracefulStop closes the listeners starts no call: Stop closes it,
// GracefulStop tells it at once that the server is going away; its call
// fails with Unavailable and no handler runs.
func TestNoCallStartsOnceStopBegan(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			path := filepath.Join(testutil.ShortTempDir(t), "s.sock")
			ul, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := grpcipc.NewServer()
			if err != nil {
				t.Fatal(err)
			}
			var handled atomic.Int32
			greetpb.RegisterGreeterServer(srv, countingGreeter{n: &handled})
			served := make(chan error, 1)
			go func() { served <- srv.Serve(slowCloseListener{ul}) }()
			if err := e2e.SayHello(t, "unix://"+path); err != nil {
				t.Fatalf("before Stop: %v", err)
			}
			handled.Store(0)
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				if graceful {
					srv.GracefulStop()
				} else {
					srv.Stop()
				}
			}()
			time.Sleep(200 * time.Millisecond) // Stop has begun; the listener is closing
			err = e2e.SayHello(t, "unix://"+path)
			if status.Code(err) != codes.Unavailable {
				t.Errorf("a call on a connection made after Stop began: %v; want Unavailable", err)
			}
			if n := handled.Load(); n != 0 {
				t.Errorf("%d handlers ran after Stop began", n)
			}
			<-stopped
			<-served
		})
	}
}

type countingGreeter struct {
	greetpb.UnimplementedGreeterServer
	n *atomic.Int32
}

func (g countingGreeter) SayHello(context.Context, *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	g.n.Add(1)
	return &greetpb.HelloReply{Message: "hello"}, nil
}
