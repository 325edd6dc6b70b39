package fastpath

import (
	"bufio"
	"context"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// notStartedSetup: a client connection on a pipe (a write returns once
// the other end has read it all) whose writer is held in a write of a
// 1 MiB request, with a small call's request and then another 1 MiB
// request waiting behind it: they go out together in the next write.
// It returns the server's end, reading frames, and the small call's
// outcome.
func notStartedSetup(t *testing.T) (fc *ClientConn, sEnd net.Conn, r *wire.Reader, small <-chan error, wg *sync.WaitGroup) {
	cEnd, sEnd := net.Pipe()
	fc = newClientConn(cEnd, bufio.NewReader(cEnd), wire.Version, ClientConfig{Budget: 64 << 20})
	fc.ensureReader()
	t.Cleanup(func() { fc.Close(nil); sEnd.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	ci := CallInfo{maxRecv: 4 << 20, maxSend: 4 << 20}
	big := &greetpb.HelloRequest{Name: strings.Repeat("x", 1<<20)}
	wg = new(sync.WaitGroup)
	invoke := func(req *greetpb.HelloRequest) <-chan error {
		ch := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ci := ci
			ch <- fc.Invoke(ctx, "/greet.Greeter/SayHello", req, new(greetpb.HelloReply), &ci)
		}()
		return ch
	}
	invoke(big) // its write blocks: nobody reads yet
	time.Sleep(100 * time.Millisecond)
	small = invoke(&greetpb.HelloRequest{Name: "small"})
	time.Sleep(100 * time.Millisecond)
	invoke(big)
	time.Sleep(100 * time.Millisecond)
	return fc, sEnd, wire.NewReader(bufio.NewReader(sEnd), wire.DefaultMaxFrame), small, wg
}

// A unary call that fails UNAVAILABLE is retried (ErrNotStarted) only if
// its request never reached the server. One taken by a write still under
// way may have: here the server reads the small call's request, whose
// write goes on with a 1 MiB request the server does not read yet, and
// answers it UNAVAILABLE (its handler's own error). The call must end
// with that status, not ErrNotStarted: a retry would run it twice.
func TestUnavailableWhileRequestInFlightNotRetried(t *testing.T) {
	_, sEnd, r, small, wg := notStartedSetup(t)
	for {
		h, _, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Type == wire.TypeHalfClose && h.Stream == 2 {
			break
		}
	}
	tr := wire.Header{Stream: 2, Type: wire.TypeTrailers}
	p := wire.AppendTrailer(nil, &wire.Trailer{Code: uint32(codes.Unavailable), Message: "the handler says so"})
	tr.Length = uint32(len(p))
	sEnd.Write(append(wire.AppendHeader(nil, tr), p...))
	var err error
	select {
	case err = <-small:
	case <-time.After(10 * time.Second):
		t.Fatal("the small call did not end")
	}
	if err == ErrNotStarted || status.Convert(err).Message() != "the handler says so" {
		t.Errorf("the small call, which the server ran: %v, want the handler's UNAVAILABLE", err)
	}
	sEnd.Close()
	wg.Wait()
}

// The rule's purpose stands: a request that waited in the writer behind
// a write under way when the connection closed was never read, and its
// call is retried.
func TestRequestWaitingAtCloseNotStarted(t *testing.T) {
	_, sEnd, _, small, wg := notStartedSetup(t)
	sEnd.Close()
	var err error
	select {
	case err = <-small:
	case <-time.After(10 * time.Second):
		t.Fatal("the small call did not end")
	}
	if err != ErrNotStarted {
		t.Errorf("the small call, whose request never left the writer: %v, want ErrNotStarted", err)
	}
	wg.Wait()
}

// Callers on one connection whose contexts end at any moment, around the
// ends of their calls: each caller woken by its call's end counts in
// wakes until it runs, and a request made meanwhile waits for the last
// of them. The count must come back to nought whatever the timing, and a
// lone call made afterwards must not wait.
func TestWakesBalancedUnderCancellation(t *testing.T) {
	srv := NewServer(ServerConfig{MaxRecv: 4 << 20, MaxSend: math.MaxInt32, ConnBudget: 64 << 20, CallerBudget: 256 << 20, FrameTimeout: 10 * time.Second})
	greetpb.RegisterGreeterServer(srv, fuzzGreeter{})
	defer func() { srv.Shutdown(false); srv.Close() }()
	cEnd, sEnd := socketPair(t)
	go srv.Serve(sEnd, logCaller{fuzzCaller{sEnd}, t}, wire.Version, nil)
	br := bufio.NewReader(cEnd)
	if _, err := io.ReadFull(br, make([]byte, wire.PrefaceSize)); err != nil {
		t.Fatal(err)
	}
	fc := newClientConn(cEnd, br, wire.Version, ClientConfig{Budget: 64 << 20})
	defer fc.Close(nil)
	ci := CallInfo{maxRecv: 4 << 20, maxSend: 4 << 20}
	var wg sync.WaitGroup
	stop := time.Now().Add(time.Second)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((g*7+i)%40)*5*time.Microsecond)
				ci := ci
				fc.Invoke(ctx, "/greet.Greeter/SayHello", &greetpb.HelloRequest{Name: "w"}, new(greetpb.HelloReply), &ci)
				cancel()
			}
		}()
	}
	wg.Wait()
	if n := fc.wakes.Load(); n != 0 {
		t.Fatalf("after every caller returned, wakes is %d", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := fc.Invoke(ctx, "/greet.Greeter/SayHello", &greetpb.HelloRequest{Name: "lone"}, new(greetpb.HelloReply), &ci); err != nil {
		fc.mu.Lock()
		ferr, away := fc.err, fc.goingAway
		fc.mu.Unlock()
		t.Fatalf("a lone call after the others (%v): %v (connection: %v, going away %v)", time.Since(start), err, ferr, away)
	}
}

// logCaller is a fuzzCaller that logs the server's warnings.
type logCaller struct {
	fuzzCaller
	t *testing.T
}

func (c logCaller) Warn(msg string, args ...any) { c.t.Log(append([]any{msg}, args...)...) }
