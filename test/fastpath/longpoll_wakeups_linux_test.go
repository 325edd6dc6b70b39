package fastpath

import (
	"context"
	"syscall"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// While a unary call reads its own reply for a long time (a long poll), the
// client's idle watch sleeps: the process is not woken every 20 ms while
// the call waits. Measured as the process's voluntary context switches
// over 2 s of one blocked call. (Found by an attack round: the watch
// re-armed itself while a call led, about 250 wake-ups a second.)
func TestLongPollIdleWatchTicks(t *testing.T) {
	svc := newFPService()
	env := fpServe(t, testutil.Endpoint(t), svc)
	conn := fpConnect(t, env.endpoint, fpProtocols[0])
	client := testgrpc.NewTestServiceClient(conn)
	for range 3 { // the background reader retires: the next call leads
		c, _ := fpCall(t, "")
		if _, err := client.EmptyCall(c, &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, _ := fpCall(t, "slow")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		done <- err
	}()
	<-svc.entered
	time.Sleep(200 * time.Millisecond)
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	time.Sleep(2 * time.Second)
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	t.Logf("voluntary context switches over 2 s of one waiting call: %d (involuntary %d)", after.Nvcsw-before.Nvcsw, after.Nivcsw-before.Nivcsw)
	close(svc.release)
	<-done
}

// The same, against a hand-written server that never answers the second
// call (so that only the client's goroutines and timers run).
func TestLongPollIdleWatchTicksClientOnly(t *testing.T) {
	release := make(chan struct{})
	endpoint := atkServe(t, func(c *atkConn) {
		id, err := c.UntilHalfClose()
		if err != nil {
			return
		}
		c.Reply(id, wrapperspb.String("ok"))
		c.UntilHalfClose()
		<-release
	})
	t.Cleanup(func() { close(release) })
	conn := atkClient(t, endpoint)
	if _, err := atkInvoke(conn, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := atkInvoke(conn, 3*time.Second)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	time.Sleep(2 * time.Second)
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	n := after.Nvcsw - before.Nvcsw
	t.Logf("voluntary context switches over 2 s of one waiting call: %d (involuntary %d)", n, after.Nivcsw-before.Nivcsw)
	if n > 100 { // before 401495a: under 15
		t.Errorf("%d voluntary context switches in 2 s while one call waits: the idle watch ticks every %v while a call leads", n, 20*time.Millisecond)
	}
	<-done
}
