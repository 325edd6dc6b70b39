package reliability

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/demo"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func init() {
	// serve ENDPOINT: the demo server in its own process; prints "ready",
	// stops gracefully when its standard input closes.
	testutil.RegisterHelper("serve", func(args []string) error {
		l, err := grpcipc.Listen(context.Background(), args[0])
		if err != nil {
			return err
		}
		srv, err := demo.NewServer()
		if err != nil {
			return err
		}
		go func() {
			io.Copy(io.Discard, os.Stdin)
			srv.GracefulStop()
		}()
		fmt.Println("ready")
		return srv.Serve(l)
	})
}

// startServeHelper runs the demo server in another process; closing the
// returned function's stdin stops it gracefully, kill stops it at once.
func startServeHelper(t *testing.T, endpoint string) (stop func(), kill func()) {
	t.Helper()
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "serve", endpoint)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := testutil.Start(t, cmd)
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("server helper said %q, %v", line, err)
	}
	go io.Copy(io.Discard, r)
	return func() { stdin.Close(); cmd.Wait() }, func() { cmd.Process.Kill(); cmd.Wait() }
}

func TestServerKilledDuringStream(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	_, kill := startServeHelper(t, endpoint)
	conn := e2e.NewClient(t, endpoint)
	ctx := e2e.Context(t)
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := stream.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch message: %v, %v", first, err)
	}
	killed := time.Now()
	kill()
	_, err = stream.Recv()
	noticed := time.Since(killed)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("stream after SIGKILL: %v; want Unavailable", err)
	}
	if noticed > 2*time.Second {
		t.Errorf("the client took %v to see the server die", noticed)
	}
	// A new server replaces the stale socket; the same ClientConn gets
	// through again.
	stop, _ := startServeHelper(t, endpoint)
	defer stop()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := greetpb.NewGreeterClient(conn).SayHello(rctx, &greetpb.HelloRequest{Name: "again"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("the same ClientConn after the server came back: %v", err)
	}
	t.Logf("the client saw the kill in %v", noticed.Round(time.Microsecond))
}

func TestGracefulStopFinishesInFlightCalls(t *testing.T) {
	endpoint, srv, g, _ := e2e.StartSlowServer(t)
	conn := e2e.NewClient(t, endpoint)
	client := greetpb.NewGreeterClient(conn)
	slow := make(chan error, 1)
	go func() {
		_, err := client.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "slow"})
		slow <- err
	}()
	<-g.Entered
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	// New calls are refused while the in-flight one runs.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint)).SayHello(ctx, &greetpb.HelloRequest{Name: "new"})
		cancel()
		if status.Code(err) == codes.Unavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new call during GracefulStop: %v; want Unavailable", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned before the in-flight call finished")
	default:
	}
	close(g.Release)
	if err := <-slow; err != nil {
		t.Errorf("the in-flight call: %v", err)
	}
	<-stopped
}

func TestClientCancelFreesServerWork(t *testing.T) {
	endpoint, _, g, _ := e2e.StartSlowServer(t)
	client := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := client.SayHello(ctx, &greetpb.HelloRequest{Name: "slow"})
		done <- err
	}()
	<-g.Entered
	cancelled := time.Now()
	cancel()
	select {
	case <-g.Cancelled:
		t.Logf("the handler saw the cancel in %v", time.Since(cancelled).Round(time.Microsecond))
	case <-time.After(2 * time.Second):
		t.Fatal("the server's handler was not told the client cancelled")
	}
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Errorf("the cancelled call: %v", err)
	}
}
