package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/cmd/grpcipc/internal/bench/benchpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Workload kinds.
const (
	Unary      = "unary"      // one call in flight: latency
	Throughput = "throughput" // concurrent callers: calls per second
	Stream     = "stream"     // server streaming: MB per second
)

// Workload is one thing measured.
type Workload struct {
	Kind    string
	Size    int // payload bytes
	Callers int // Throughput only
}

// String names the workload as the table does, e.g. "unary 1 KiB".
func (w Workload) String() string {
	s := w.Kind + " " + SizeString(w.Size)
	if w.Callers > 1 {
		s += fmt.Sprintf(" x%d", w.Callers)
	}
	return s
}

// SizeString writes a byte count the short way: 0 B, 1 KiB, 1 MiB.
func SizeString(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// Sample is one measurement of one workload on one target.
type Sample struct {
	P50, P99    time.Duration // Unary and Throughput (each call's latency)
	CallsPerSec float64       // Unary and Throughput
	MBPerSec    float64       // Stream
	Ops         float64       // calls made, or MiB moved (Stream)
}

// streamOpenTimeout bounds how long a stream workload waits for its first
// message.
const streamOpenTimeout = 10 * time.Second

// Client is a connection to a target that can run the workloads.
type Client interface {
	// Echo makes one round trip of payload.
	Echo(ctx context.Context, payload []byte) error
	// Stream receives messages of size bytes until ctx ends, and returns
	// the bytes received after the first message; started is called when
	// the first message has arrived, so that the caller times the stream
	// from there and not from the call (opening a stream on a loaded
	// machine may take longer than a short measurement).
	Stream(ctx context.Context, size int, started func()) (int64, error)
	// Receive opens a stream of messages of size bytes and receives n.
	Receive(ctx context.Context, size, n int) error
	// Parallel returns n clients that can call at the same time (one
	// connection shared for gRPC, as its users do; n for raw sockets).
	Parallel(n int) ([]Client, func(), error)
	Close() error
}

// Dial connects to a target.
func Dial(ctx context.Context, t Target) (Client, error) {
	switch t.Stack {
	case StackRaw, StackRawAlloc:
		return &rawClient{target: t, alloc: t.Stack == StackRawAlloc}, nil
	case StackGRPCGo:
		target := strings.TrimPrefix(t.Endpoint, "tcp://")
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		return &grpcClient{conn: conn, c: benchpb.NewBenchClient(conn)}, nil
	case StackGRPCIPC, StackGRPCIPC2:
		var opts []grpcipc.ClientOption
		if t.Stack == StackGRPCIPC2 {
			opts = append(opts, grpcipc.WithHTTP2())
		}
		conn, err := grpcipc.NewClient(t.Endpoint, opts...)
		if err != nil {
			return nil, err
		}
		return &grpcClient{conn: conn, c: benchpb.NewBenchClient(conn)}, nil
	}
	return nil, fmt.Errorf("%w %q", errUnknownStack, t.Stack)
}

type grpcClient struct {
	conn io.Closer
	c    benchpb.BenchClient
}

func (g *grpcClient) Echo(ctx context.Context, payload []byte) error {
	_, err := g.c.Echo(ctx, &benchpb.Payload{Data: payload})
	return err
}

func (g *grpcClient) Stream(ctx context.Context, size int, started func()) (int64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := g.c.Stream(sctx, &benchpb.StreamRequest{SizeBytes: int32(size)})
	if err != nil {
		return 0, err
	}
	var n int64
	first := true
	for {
		m, err := s.Recv()
		if err != nil {
			if ctx.Err() != nil && !first {
				return n, nil // the caller's timer ended the stream
			}
			return n, err
		}
		if first {
			first = false
			started()
			continue
		}
		n += int64(len(m.GetData()))
	}
}

func (g *grpcClient) Receive(ctx context.Context, size, n int) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := g.c.Stream(sctx, &benchpb.StreamRequest{SizeBytes: int32(size)})
	if err != nil {
		return err
	}
	for range n {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
	return nil
}

func (g *grpcClient) Parallel(n int) ([]Client, func(), error) {
	cs := make([]Client, n)
	for i := range cs {
		cs[i] = g
	}
	return cs, func() {}, nil
}

func (g *grpcClient) Close() error { return g.conn.Close() }

// rawClient speaks the raw protocol of serveRaw.
type rawClient struct {
	target Target
	alloc  bool // a new buffer for every streamed message, as generated stubs do
	echo   net.Conn
	buf    []byte
}

func (r *rawClient) dial(ctx context.Context, mode byte) (net.Conn, error) {
	c, err := grpcipc.Dial(ctx, r.target.Endpoint)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{mode}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (r *rawClient) Echo(ctx context.Context, payload []byte) error {
	if r.echo == nil {
		c, err := r.dial(ctx, rawEcho)
		if err != nil {
			return err
		}
		r.echo = c
	}
	msg := make([]byte, 4, 4+len(payload))
	binary.BigEndian.PutUint32(msg, uint32(len(payload)))
	msg = append(msg, payload...)
	if _, err := r.echo.Write(msg); err != nil {
		return err
	}
	if cap(r.buf) < len(msg) {
		r.buf = make([]byte, len(msg))
	}
	_, err := io.ReadFull(r.echo, r.buf[:len(msg)])
	return err
}

func (r *rawClient) Stream(ctx context.Context, size int, started func()) (int64, error) {
	c, err := r.dial(ctx, rawStream)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(size))
	if _, err := c.Write(hdr[:]); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	buf := make([]byte, 4+size)
	var n int64
	first := true
	for {
		if r.alloc {
			buf = make([]byte, 4+size)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			if ctx.Err() != nil && !first {
				return n, nil // the caller's timer ended the stream
			}
			return n, err
		}
		if first {
			first = false
			started()
			continue
		}
		n += int64(size)
	}
}

func (r *rawClient) Receive(ctx context.Context, size, n int) error {
	c, err := r.dial(ctx, rawStream)
	if err != nil {
		return err
	}
	defer c.Close()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(size))
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	buf := make([]byte, 4+size)
	for range n {
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
	}
	return nil
}

func (r *rawClient) Parallel(n int) ([]Client, func(), error) {
	cs := make([]Client, n)
	for i := range cs {
		cs[i] = &rawClient{target: r.target, alloc: r.alloc}
	}
	return cs, func() {
		for _, c := range cs {
			c.Close()
		}
	}, nil
}

func (r *rawClient) Close() error {
	if r.echo != nil {
		return r.echo.Close()
	}
	return nil
}

// Measure runs w on c for about d and returns what it measured.
func Measure(ctx context.Context, c Client, w Workload, d time.Duration) (Sample, error) {
	payload := make([]byte, w.Size)
	switch w.Kind {
	case Unary:
		lat := make([]time.Duration, 0, 4096)
		start := time.Now()
		for time.Since(start) < d || len(lat) < 5 {
			t0 := time.Now()
			if err := c.Echo(ctx, payload); err != nil {
				return Sample{}, err
			}
			lat = append(lat, time.Since(t0))
		}
		elapsed := time.Since(start)
		slices.Sort(lat)
		return Sample{
			P50: lat[len(lat)/2], P99: lat[len(lat)*99/100],
			CallsPerSec: float64(len(lat)) / elapsed.Seconds(), Ops: float64(len(lat)),
		}, nil
	case Throughput:
		clients, closeAll, err := c.Parallel(w.Callers)
		if err != nil {
			return Sample{}, err
		}
		defer closeAll()
		var firstErr atomic.Value
		var wg sync.WaitGroup
		lats := make([][]time.Duration, len(clients)) // each caller's calls
		start := time.Now()
		for i, cl := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lat := make([]time.Duration, 0, 1024)
				for t0 := time.Now(); t0.Sub(start) < d; {
					if err := cl.Echo(ctx, payload); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					t1 := time.Now()
					lat = append(lat, t1.Sub(t0))
					t0 = t1
				}
				lats[i] = lat
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		if err, ok := firstErr.Load().(error); ok {
			return Sample{}, err
		}
		all := slices.Concat(lats...)
		if len(all) == 0 {
			return Sample{}, fmt.Errorf("no call ended within %v", d)
		}
		slices.Sort(all)
		n := float64(len(all))
		return Sample{
			P50: all[len(all)/2], P99: all[len(all)*99/100],
			CallsPerSec: n / elapsed.Seconds(), Ops: n,
		}, nil
	case Stream:
		// Cancel rather than set a deadline: a deadline travels to the
		// server, which may end the stream first, with an error. The
		// measurement starts with the first message: the bench's own
		// timer must never cut the opening of a stream (on a loaded
		// machine that took longer than a --quick measurement, and the
		// stream failed with Canceled). Opening gets streamOpenTimeout.
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var (
			start time.Time
			timer *time.Timer
		)
		open := time.AfterFunc(streamOpenTimeout, cancel)
		defer open.Stop()
		n, err := c.Stream(sctx, w.Size, func() {
			open.Stop()
			start = time.Now()
			timer = time.AfterFunc(d, cancel)
		})
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			if start.IsZero() && sctx.Err() != nil && ctx.Err() == nil {
				return Sample{}, fmt.Errorf("no %d-byte message arrived within %v of opening the stream", w.Size, streamOpenTimeout)
			}
			return Sample{}, err
		}
		mib := float64(n) / (1 << 20)
		return Sample{MBPerSec: float64(n) / 1e6 / time.Since(start).Seconds(), Ops: mib}, nil
	}
	return Sample{}, fmt.Errorf("unknown workload %q", w.Kind)
}
