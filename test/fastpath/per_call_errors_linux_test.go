package fastpath

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// One call's error stays that call's (issue 21, items 2 and 4): a call
// whose request or trailer is over a limit, or whose metadata grpc-go
// refuses, fails alone with the code the HTTP/2 client gets, while another
// call on the same ClientConn goes on and the server keeps the connection.

const (
	pcUnary   = "/grpcipc.test.PerCall/Unary"
	pcDetails = "/grpcipc.test.PerCall/Details"
	pcEcho    = "/grpcipc.test.PerCall/Echo"
	pcBig     = "/grpcipc.test.PerCall/BigMetadata"
)

// pcBigSize: the response header and trailer the BigMetadata handler sets.
const pcBigSize = 2 << 20

// pcDetailsSize: the status details the Details handler returns.
const pcDetailsSize = 2 << 20

var perCallDesc = grpc.ServiceDesc{
	ServiceName: "grpcipc.test.PerCall",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var m wrapperspb.BytesValue
			if err := dec(&m); err != nil {
				return nil, err
			}
			return &m, nil
		},
	}, {
		MethodName: "Details",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var m wrapperspb.BytesValue
			if err := dec(&m); err != nil {
				return nil, err
			}
			st, err := status.New(codes.Aborted, "lots of details").WithDetails(&wrapperspb.BytesValue{Value: make([]byte, pcDetailsSize)})
			if err != nil {
				return nil, err
			}
			return nil, st.Err()
		},
	}, {
		MethodName: "BigMetadata",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var m wrapperspb.BytesValue
			if err := dec(&m); err != nil {
				return nil, err
			}
			if err := grpc.SetHeader(ctx, metadata.Pairs("big-h", strings.Repeat("h", pcBigSize))); err != nil {
				return nil, err
			}
			if err := grpc.SetTrailer(ctx, metadata.Pairs("big-t", strings.Repeat("t", pcBigSize))); err != nil {
				return nil, err
			}
			return &m, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName: "Echo", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				var m wrapperspb.BytesValue
				if err := ss.RecvMsg(&m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if err := ss.SendMsg(&m); err != nil {
					return err
				}
			}
		},
	}},
}

// connCounter counts the connections a server begins to serve, on either
// protocol.
type connCounter struct{ n atomic.Int32 }

func (c *connCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *connCounter) HandleRPC(context.Context, stats.RPCStats)                       {}
func (c *connCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *connCounter) HandleConn(_ context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnBegin); ok {
		c.n.Add(1)
	}
}

// servePerCall serves PerCall and returns its endpoint and the count of
// its connections.
func servePerCall(t *testing.T, suffix string) (string, *connCounter) {
	t.Helper()
	endpoint := "unix-abstract:" + testutil.AbstractName(t) + suffix
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	cl := &connCounter{}
	s, err := grpcipc.NewServer(grpcipc.WithStatsHandler(cl))
	if err != nil {
		t.Fatal(err)
	}
	s.RegisterService(&perCallDesc, struct{}{})
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return endpoint, cl
}

// perCallCase is one call that fails (or, over HTTP/2, may succeed) alone.
type perCallCase struct {
	name   string
	method string
	ctx    func(context.Context) context.Context
	// want: the code over HTTP/2 and on the fast path, and a word the fast
	// path's message has (the limit it names)
	http2, fast codes.Code
	fastWord    string
}

func perCallCases() []perCallCase {
	big := strings.Repeat("x", wire.DefaultMaxFrame+10<<10)
	return []perCallCase{{
		// A CALL larger than a frame goes in parts (version 2).
		name: "oversized metadata", method: pcUnary,
		ctx:   func(ctx context.Context) context.Context { return metadata.AppendToOutgoingContext(ctx, "big", big) },
		http2: codes.OK, fast: codes.OK,
	}, {
		name: "1025 entries", method: pcUnary,
		ctx: func(ctx context.Context) context.Context {
			kv := make([]string, 0, 2*1025)
			for i := range 1025 {
				kv = append(kv, fmt.Sprintf("k%d", i), "v")
			}
			return metadata.AppendToOutgoingContext(ctx, kv...)
		},
		http2: codes.OK, fast: codes.OK,
	}, {
		// Over 16 MiB as HTTP/2 counts a header list: grpc-go's default
		// limit, and the fast path's.
		name: "metadata over 16 MiB", method: pcUnary,
		ctx: func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "huge", strings.Repeat("x", 16<<20))
		},
		http2: codes.Internal, fast: codes.Internal, fastWord: "over the limit (16777216 bytes)",
	}, {
		name: "1025-byte method", method: "/grpcipc.test.PerCall/" + strings.Repeat("m", 1025-len("/grpcipc.test.PerCall/")),
		http2: codes.Unimplemented, fast: codes.Unimplemented, fastWord: "limit (1024 bytes)",
	}, {
		name: "2 MiB of status details", method: pcDetails,
		http2: codes.Aborted, fast: codes.Aborted, fastWord: "lots of details",
	}, {
		name: "2 MiB response header and trailer", method: pcBig,
		http2: codes.OK, fast: codes.OK,
	}, {
		name: "upper-case key", method: pcUnary,
		ctx: func(ctx context.Context) context.Context {
			return metadata.NewOutgoingContext(ctx, metadata.MD{"Upper-Key": {"v"}})
		},
		http2: codes.Internal, fast: codes.Internal, fastWord: "illegal characters",
	}}
}

func TestOneCallsErrorStaysItsOwn(t *testing.T) {
	for _, c := range perCallCases() {
		t.Run(c.name, func(t *testing.T) {
			h2 := perCallRun(t, c, grpcipc.WithHTTP2())
			fast := perCallRun(t, c)
			t.Logf("HTTP/2: %v; fast path: %v", h2.err, fast.err)
			if got := status.Code(h2.err); got != c.http2 {
				t.Errorf("HTTP/2: %v, want %v", h2.err, c.http2)
			}
			if got := status.Code(fast.err); got != c.fast {
				t.Errorf("fast path: %v, want %v", fast.err, c.fast)
			}
			if c.fast != codes.OK && !strings.Contains(status.Convert(fast.err).Message(), c.fastWord) {
				t.Errorf("fast path: %v, want a message with %q", fast.err, c.fastWord)
			}
			switch c.method {
			case pcDetails:
				// Both carry the details (2 MiB, under 16 MiB).
				for name, r := range map[string]perCallResult{"HTTP/2": h2, "fast path": fast} {
					d := status.Convert(r.err).Details()
					if len(d) != 1 {
						t.Errorf("%s: %d details, want 1", name, len(d))
					} else if b, ok := d[0].(*wrapperspb.BytesValue); !ok || len(b.Value) != pcDetailsSize {
						t.Errorf("%s: details %T, want %d bytes", name, d[0], pcDetailsSize)
					}
				}
			case pcBig:
				for name, r := range map[string]perCallResult{"HTTP/2": h2, "fast path": fast} {
					if h := r.header.Get("big-h"); len(h) != 1 || len(h[0]) != pcBigSize {
						t.Errorf("%s: the header's big-h has %d values, want one of %d bytes", name, len(h), pcBigSize)
					}
					if tr := r.trailer.Get("big-t"); len(tr) != 1 || len(tr[0]) != pcBigSize {
						t.Errorf("%s: the trailer's big-t has %d values, want one of %d bytes", name, len(tr), pcBigSize)
					}
				}
			}
			if c.ctx != nil && status.Convert(fast.err).Message() != status.Convert(h2.err).Message() && c.http2 == c.fast && c.fast == codes.Internal && c.name == "upper-case key" {
				t.Errorf("fast path: %q, HTTP/2: %q: want grpc-go's words on both", status.Convert(fast.err).Message(), status.Convert(h2.err).Message())
			}
			if h2.conns != 1 || fast.conns != 1 {
				t.Errorf("connections accepted: HTTP/2 %d, fast path %d; want 1 each", h2.conns, fast.conns)
			}
		})
	}
}

// perCallResult is what perCallRun saw.
type perCallResult struct {
	conns           int32 // connections the server accepted
	err             error // the call's
	header, trailer metadata.MD
}

// perCallRun makes c's call on a new ClientConn while another call (a
// stream) is open on it, checks that the stream goes on and that a later
// call succeeds, and returns the call's error and how many connections the
// server accepted.
func perCallRun(t *testing.T, c perCallCase, opts ...grpcipc.ClientOption) (r perCallResult) {
	t.Helper()
	endpoint, cl := servePerCall(t, fmt.Sprint(len(opts)))
	cc, err := grpcipc.NewClient(endpoint, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The other call: open before, used after.
	other, err := cc.NewStream(ctx, &perCallDesc.Streams[0], pcEcho)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.SendMsg(wrapperspb.Bytes([]byte("one"))); err != nil {
		t.Fatal(err)
	}
	var m wrapperspb.BytesValue
	if err := other.RecvMsg(&m); err != nil {
		t.Fatalf("the other call: %v", err)
	}

	callCtx := ctx
	if c.ctx != nil {
		callCtx = c.ctx(ctx)
	}
	r.err = cc.Invoke(callCtx, c.method, wrapperspb.Bytes([]byte("hi")), new(wrapperspb.BytesValue), grpc.Header(&r.header), grpc.Trailer(&r.trailer))

	if err := other.SendMsg(wrapperspb.Bytes([]byte("two"))); err != nil {
		t.Errorf("the other call noticed (send): %v", err)
	} else if err := other.RecvMsg(&m); err != nil || string(m.Value) != "two" {
		t.Errorf("the other call noticed (receive): %v", err)
	}
	if err := other.CloseSend(); err != nil {
		t.Errorf("the other call: CloseSend: %v", err)
	}
	if err := other.RecvMsg(&m); err != io.EOF {
		t.Errorf("the other call ended with %v, want io.EOF", err)
	}
	if err := cc.Invoke(ctx, pcUnary, wrapperspb.Bytes([]byte("after")), new(wrapperspb.BytesValue)); err != nil {
		t.Errorf("a call after: %v", err)
	}
	r.conns = cl.n.Load()
	return r
}

// A client other than grpcipc's (or an older one) that sends a CALL over
// the method-name or metadata limits gets that call refused with TRAILERS,
// and the connection lives.
func TestServerRefusesTheCallNotTheConnection(t *testing.T) {
	endpoint, _ := servePerCall(t, "")
	// 524,289 empty values: 3 bytes each on the wire, 33 each as HTTP/2
	// counts them, one more than 16 MiB allows.
	tiny := make([]wire.KV, wire.MaxHeaderListSize/32+1)
	for i := range tiny {
		tiny[i] = wire.KV{Key: "a"}
	}
	for _, c := range []struct {
		name string
		call wire.Call
		code codes.Code
	}{
		{"1025-byte method", wire.Call{Method: "/grpcipc.test.PerCall/" + strings.Repeat("m", 1025-len("/grpcipc.test.PerCall/"))}, codes.Unimplemented},
		{"524,289 entries", wire.Call{Method: pcUnary, Metadata: tiny}, codes.Internal},
		{"a value of 16 MiB", wire.Call{Method: pcUnary, Metadata: []wire.KV{{Key: "v", Value: strings.Repeat("v", 16<<20)}}}, codes.Internal},
		{"17 MiB in parts", wire.Call{Method: pcUnary, Metadata: []wire.KV{{Key: "v", Value: strings.Repeat("v", 17<<20)}}}, codes.Internal},
	} {
		t.Run(c.name, func(t *testing.T) {
			rf := e2e.DialFast(t, endpoint)
			defer rf.C.Close()
			rf.Send(t, e2e.CallParts(1, &c.call), e2e.RawFrame(1, wire.TypeHalfClose, 0, nil))
			h, p, err := rf.Next(5 * time.Second)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if h.Type != wire.TypeTrailers || h.Stream != 1 {
				t.Fatalf("the server sent %v on stream %d, want TRAILERS on 1", h.Type, h.Stream)
			}
			tr, err := wire.ParseTrailer(p)
			if err != nil {
				t.Fatal(err)
			}
			if codes.Code(tr.Code) != c.code || !strings.Contains(tr.Message, "limit") {
				t.Errorf("TRAILERS %v %q, want %v naming the limit", codes.Code(tr.Code), tr.Message, c.code)
			}
			rf.Alive(t)
			// And the connection serves the next call.
			rf.Send(t, e2e.RawFrame(3, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: pcUnary})),
				e2e.RawFrame(3, wire.TypeMessage, 0, nil), e2e.RawFrame(3, wire.TypeHalfClose, 0, nil))
			for {
				h, p, err := rf.Next(3 * time.Second)
				if err != nil {
					t.Fatalf("the next call: %v (frames %v)", err, rf.Frames)
				}
				if h.Type == wire.TypeTrailers && h.Stream == 3 {
					if tr, _ := wire.ParseTrailer(p); tr.Code != 0 {
						t.Errorf("the next call: %v %q", codes.Code(tr.Code), tr.Message)
					}
					break
				}
			}
			if rf.GoAway != nil {
				t.Errorf("the server sent GOAWAY %+v", *rf.GoAway)
			}
		})
	}
}

// A call that the server ends the connection over (GOAWAY with a code
// other than UNAVAILABLE, naming no stream started) is not retried on new
// connections: it fails once, with the server's code and words. A server
// that stops (GOAWAY UNAVAILABLE) still has its unstarted calls retried.
func TestNoRetryAfterAConnectionError(t *testing.T) {
	for _, c := range []struct {
		name      string
		code      codes.Code
		wantConns int32
	}{
		{"connection error", codes.Internal, 1},
		{"stopping", codes.Unavailable, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			l, err := net.Listen("unix", "@"+strings.TrimPrefix(endpoint, "unix-abstract:"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var conns atomic.Int32
			go func() {
				for {
					c2, err := l.Accept()
					if err != nil {
						return
					}
					conns.Add(1)
					go func() {
						defer c2.Close()
						br := bufio.NewReader(c2)
						var pre [wire.OfferSize]byte
						io.ReadFull(br, pre[:])
						c2.Write(wire.AppendPreface(nil, wire.Version))
						r := wire.NewReader(br, wire.DefaultMaxFrame)
						for {
							h, _, err := r.Next()
							if err != nil {
								return
							}
							if h.Type == wire.TypeCall {
								c2.Write(e2e.RawFrame(0, wire.TypeGoAway, 0, wire.AppendGoAway(nil, &wire.GoAway{Code: uint32(c.code), Message: "no"})))
								return
							}
						}
					}()
				}
			}()
			conn := e2e.NewClient(t, endpoint, grpcipc.WithExpectedServer(grpcipc.Anyone()))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = conn.Invoke(ctx, pcUnary, wrapperspb.Bytes(nil), new(wrapperspb.BytesValue))
			if status.Code(err) != c.code {
				t.Errorf("the call: %v, want %v", err, c.code)
			}
			if c.code != codes.Unavailable && !strings.Contains(err.Error(), "no") {
				t.Errorf("the call: %v, want the server's message", err)
			}
			time.Sleep(50 * time.Millisecond)
			if n := conns.Load(); n != c.wantConns {
				t.Errorf("the client connected %d times, want %d", n, c.wantConns)
			}
		})
	}
}
