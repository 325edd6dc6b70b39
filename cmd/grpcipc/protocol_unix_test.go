//go:build unix

package main

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestCallSpeaksFastPath: call and list speak the fast path to a grpcipc
// server, and HTTP/2 with --http2; both reach the same services.
func TestCallSpeaksFastPath(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := demo.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	for _, tc := range []struct {
		args []string
		want grpcipc.Protocol
	}{
		{nil, grpcipc.ProtocolFast},
		{[]string{"--http2"}, grpcipc.ProtocolHTTP2},
	} {
		fs := flag.NewFlagSet("call", flag.ContinueOnError)
		f := addClientFlags(fs, true)
		if err := fs.Parse(append([]string{"--connect", endpoint}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cl, err := connect(ctx, f)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		// Reflection (a bidi stream) and a unary call, as call and list make them.
		if _, err := cl.refl.ListServices(); err != nil {
			t.Errorf("%v: listing services: %v", tc.args, err)
		}
		if _, err := healthpb.NewHealthClient(cl.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("%v: health check: %v", tc.args, err)
		}
		if got := cl.conn.Protocol(); got != tc.want {
			t.Errorf("%v: the CLI's connection speaks %q, want %q", tc.args, got, tc.want)
		}
		cl.Close()
		cancel()
	}
}
