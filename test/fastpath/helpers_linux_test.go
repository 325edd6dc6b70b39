package fastpath

// Helpers of the hand-written-server tests: a fast-path server spoken by hand, whose
// behaviour each test writes.

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// atkUnary is the method the hand-written-server tests call on hand-written servers.
const atkUnary = "/atk.S/U"

// atkConn is one connection of a hand-written fast-path server.
type atkConn struct {
	C  net.Conn
	R  *wire.Reader
	mu sync.Mutex // of writes
}

// Write writes frames, ignoring errors.
func (c *atkConn) Write(frames ...[]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	_, err := c.C.Write(b)
	return err
}

// UntilHalfClose reads frames until the HALF_CLOSE of a stream, and
// returns that stream (0 and the error when reading fails).
func (c *atkConn) UntilHalfClose() (uint32, error) {
	for {
		h, _, err := c.R.Next()
		if err != nil {
			return 0, err
		}
		if h.Type == wire.TypeHalfClose {
			return h.Stream, nil
		}
	}
}

// Reply answers stream id with msg and an OK trailer.
func (c *atkConn) Reply(id uint32, msg proto.Message) error {
	b, _ := proto.Marshal(msg)
	return c.Write(
		e2e.RawFrame(id, wire.TypeMessage, 0, b),
		e2e.RawFrame(id, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{})),
	)
}

// atkServe serves a hand-written fast-path server on a fresh abstract
// endpoint, calling handle for each connection (on its own goroutine;
// the connection is closed when handle returns or the test ends).
func atkServe(t *testing.T, handle func(c *atkConn)) string {
	t.Helper()
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	l, err := net.Listen("unix", "@"+strings.TrimPrefix(endpoint, "unix-abstract:"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				var pre [wire.OfferSize]byte
				if _, err := io.ReadFull(br, pre[:]); err != nil {
					return
				}
				if _, err := c.Write(wire.AppendPreface(nil, wire.Version)); err != nil {
					return
				}
				handle(&atkConn{C: c, R: wire.NewReader(br, wire.DefaultMaxFrame)})
			}()
		}
	}()
	return endpoint
}

// atkClient is a grpcipc client of endpoint that accepts any server.
func atkClient(t *testing.T, endpoint string, opts ...grpcipc.ClientOption) *grpcipc.ClientConn {
	t.Helper()
	return e2e.NewClient(t, endpoint, append([]grpcipc.ClientOption{grpcipc.WithExpectedServer(grpcipc.Anyone())}, opts...)...)
}

// atkInvoke makes a unary call of atkUnary within d, and says how long it
// took.
func atkInvoke(conn *grpcipc.ClientConn, d time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	err := conn.Invoke(ctx, atkUnary, wrapperspb.String("q"), new(wrapperspb.StringValue))
	return time.Since(start), err
}
