package demo_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestGracefulStopEndsWatches: GracefulStop gives every watcher NOT_SERVING
// (or what its service is), then ends its stream with Unavailable, and
// returns without waiting for the watchers to go away.
func TestGracefulStopEndsWatches(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := demo.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer srv.Stop()

	conn, err := grpcipc.NewClient(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	type watcher struct {
		service string
		first   healthpb.HealthCheckResponse_ServingStatus
		last    healthpb.HealthCheckResponse_ServingStatus
		stream  healthpb.Health_WatchClient
	}
	var watchers []*watcher
	for _, w := range []*watcher{
		{"", healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, nil},
		{"greet.Greeter", healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, nil},
		{"greet.Greeter", healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, nil},
		{"no.Such", healthpb.HealthCheckResponse_SERVICE_UNKNOWN, healthpb.HealthCheckResponse_SERVICE_UNKNOWN, nil},
	} {
		if w.stream, err = hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: w.service}); err != nil {
			t.Fatal(err)
		}
		if resp, err := w.stream.Recv(); err != nil || resp.GetStatus() != w.first {
			t.Fatalf("Watch(%q): %v, %v; want %v", w.service, resp, err, w.first)
		}
		watchers = append(watchers, w)
	}

	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		t.Fatal("GracefulStop still waiting for Health/Watch streams after 3s")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	for _, w := range watchers {
		var got []string
		for {
			resp, err := w.stream.Recv()
			if err != nil {
				if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
					t.Errorf("Watch(%q) ended with %v; want Unavailable, shutting down", w.service, err)
				}
				break
			}
			got = append(got, resp.GetStatus().String())
		}
		if w.last != w.first && (len(got) != 1 || got[0] != w.last.String()) {
			t.Errorf("Watch(%q) got %v after GracefulStop; want %v", w.service, got, w.last)
		}
		if w.last == w.first && len(got) != 0 {
			t.Errorf("Watch(%q) got %v after GracefulStop; want nothing more", w.service, got)
		}
	}
}
