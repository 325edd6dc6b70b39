//go:build unix

package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestServeStopsWithHealthWatch: SIGTERM to "grpcipc serve" ends an open
// Health/Watch stream (NOT_SERVING, then Unavailable) instead of waiting
// the whole stop grace for it, while another open stream still finishes.
func TestServeStopsWithHealthWatch(t *testing.T) {
	endpoint := "unix://" + filepath.Join(testutil.ShortTempDir(t), "w.sock")
	cmd := cliCommand(t, nil, "serve", "--listen", endpoint)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	r := testutil.Start(t, cmd)
	if line, err := r.ReadString('\n'); line != "serving "+endpoint+"\n" {
		t.Fatalf("serve said %q, %v", line, err)
	}
	var rest string // what serve prints after "serving", once exited says
	exited := make(chan error, 1)
	go func() {
		b, _ := io.ReadAll(r) // before Wait, which closes the pipe
		rest = string(b)
		exited <- cmd.Wait()
	}()

	conn, err := grpcipc.NewClient(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch's first answer: %v, %v; want SERVING", resp, err)
	}
	// Another call in flight: a reflection stream, used before and after
	// the signal.
	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list := &reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}
	if err := refl.Send(list); err != nil {
		t.Fatal(err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatalf("reflection before SIGTERM: %v", err)
	}

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)

	resp, err := watch.Recv()
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Watch after SIGTERM: %v, %v; want NOT_SERVING", resp, err)
	}
	if err == nil {
		_, err = watch.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
		t.Errorf("Watch ended with %v (after %v); want Unavailable, the server is shutting down", err, time.Since(start).Round(time.Millisecond))
	}

	// The stopping server still answers the open reflection stream, and
	// waits for it.
	if err := refl.Send(list); err != nil {
		t.Errorf("reflection after SIGTERM: %v", err)
	} else if _, err := refl.Recv(); err != nil {
		t.Errorf("reflection after SIGTERM: %v", err)
	}
	select {
	case err := <-exited:
		t.Fatalf("serve exited (%v) with a call still open", err)
	case <-time.After(100 * time.Millisecond):
	}
	refl.CloseSend()
	if _, err := refl.Recv(); err != io.EOF {
		t.Errorf("reflection stream ended with %v, want EOF", err)
	}

	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v", err)
		}
	case <-time.After(stopGrace + 5*time.Second):
		t.Fatalf("serve still running %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("serve took %v to stop with a Health/Watch open; want well under its %v grace", took.Round(time.Millisecond), stopGrace)
	}
	if !strings.Contains(rest, "stopped "+endpoint+"\n") {
		t.Errorf("serve printed %q after serving; want stopped %s", rest, endpoint)
	}
	if strings.Contains(errOut.String(), "still running") {
		t.Errorf("serve stopped calls by force: %q", errOut.String())
	}
}
