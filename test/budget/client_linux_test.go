package budget

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
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testhooks"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A normal application on a long-lived ClientConn: after each pattern,
// the client's budget should be back to 0.
func TestClientChargesReturn(t *testing.T) {
	endpoint, s := serveBig(t)
	conn := e2e.NewClient(t, endpoint)
	gc := greetpb.NewGreeterClient(conn)
	check := func(name string) {
		t.Helper()
		var u int64
		for range 50 {
			if u = testhooks.ClientBudgetUsed(conn); u == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		sv, _ := testhooks.BudgetsInUse(s)
		t.Logf("%-50s client budget %d, server %v", name, u, sv)
		if u != 0 {
			t.Errorf("%s: the client's budget holds %d bytes", name, u)
		}
	}
	bg := context.Background()
	for range 50 {
		gc.SayHello(bg, &greetpb.HelloRequest{Name: "x"})
	}
	check("unary OK x50")
	conn.Invoke(bg, "/greet.Greeter/Nope", &greetpb.HelloRequest{}, &greetpb.HelloReply{})
	check("unary Unimplemented")
	readAll := func(st grpc.ClientStream, delay time.Duration) (int, error) {
		n := 0
		for {
			var m wrapperspb.BytesValue
			if err := st.RecvMsg(&m); err != nil {
				return n, err
			}
			n++
			time.Sleep(delay)
		}
	}
	st, _ := bigStreamCall(bg, conn, 4, 4<<20-16)
	n, err := readAll(st, 0)
	check("server-stream 4x4MiB read to EOF: " + strings.TrimSpace(status.Convert(err).Message()) + " " + string(rune('0'+n)))
	// deadline while reading slowly
	for i := range 5 {
		ctx, cancel := context.WithTimeout(bg, time.Duration(150+37*i)*time.Millisecond)
		st, err := bigStreamCall(ctx, conn, 50, 4<<20-16)
		if err == nil {
			n, err = readAll(st, 60*time.Millisecond)
		}
		t.Logf("deadline stream: %d msgs, %v", n, status.Code(err))
		cancel()
	}
	check("server-stream, deadline while reading slowly")
	// read one then cancel
	ctx, cancel := context.WithCancel(bg)
	st, _ = bigStreamCall(ctx, conn, 50, 4<<20-16)
	var m wrapperspb.BytesValue
	st.RecvMsg(&m)
	time.Sleep(200 * time.Millisecond)
	cancel()
	check("server-stream, read one then cancel")
	// handler returns an error after the first message while the client streams 4 MiB messages
	for range 3 {
		st, err := conn.NewStream(bg, &uploadDesc.Streams[1], "/grpcipc.test.Up/First")
		if err != nil {
			t.Fatal(err)
		}
		big := &wrapperspb.BytesValue{Value: make([]byte, 4<<20-16)}
		for st.SendMsg(big) == nil {
		}
		err = st.RecvMsg(&m)
		t.Logf("First: %v", status.Code(err))
	}
	check("client-stream, handler fails after first message")
	// bidi echo where the app stops after an error from SendMsg and reads to the end
	ctx, cancel = context.WithTimeout(bg, 300*time.Millisecond)
	st, _ = conn.NewStream(ctx, &bigDesc.Streams[1], bigEcho)
	go func() {
		big := &wrapperspb.BytesValue{Value: make([]byte, 3<<20)}
		for st.SendMsg(big) == nil {
		}
	}()
	readAll(st, 100*time.Millisecond)
	cancel()
	check("bidi echo, deadline, slow reader")
	// unary with deadlines expiring while big requests go out
	for i := range 10 {
		ctx, cancel := context.WithTimeout(bg, time.Duration(1+i)*time.Millisecond)
		conn.Invoke(ctx, "/greet.Greeter/SayHello", &greetpb.HelloRequest{Name: strings.Repeat("x", 3<<20)}, &greetpb.HelloReply{})
		cancel()
	}
	check("unary with short deadlines, 3 MiB requests")
}

// A hostile server (the client trusts "*"): half a message then OK
// trailers; and a reply + OK trailers while a unary request goes out in
// parts. Does the client hold the charges forever?
func TestClientChargesReturnAfterAHostileServer(t *testing.T) {
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	addr := "@" + strings.TrimPrefix(endpoint, "unix-abstract:")
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var pre [wire.OfferSize]byte
		io.ReadFull(br, pre[:])
		c.Write(wire.AppendPreface(nil, wire.Version))
		r := wire.NewReader(br, wire.DefaultMaxFrame)
		var mu sync.Mutex
		w := func(b []byte) { mu.Lock(); c.Write(b); mu.Unlock() }
		reply, _ := proto.Marshal(&greetpb.HelloReply{Message: strings.Repeat("r", 2<<20)})
		for {
			h, _, err := r.Next()
			if err != nil {
				return
			}
			if h.Type != wire.TypeCall {
				continue
			}
			if h.Stream%4 == 1 { // streams 1, 5, ...: half a message, then OK
				w(e2e.RawFrame(h.Stream, wire.TypeMessage, wire.FlagMore, zeros[:1<<20]))
				w(e2e.RawFrame(h.Stream, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{})))
			} else { // 3, 7, ...: a reply in parts + OK while the request still goes out
				w(e2e.RawFrame(h.Stream, wire.TypeMessage, wire.FlagMore, reply[:1<<20]))
				w(e2e.RawFrame(h.Stream, wire.TypeMessage, 0, reply[1<<20:]))
				w(e2e.RawFrame(h.Stream, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{})))
			}
		}
	}()
	conn := e2e.NewClient(t, endpoint, grpcipc.WithExpectedServer(grpcipc.Anyone()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 4 {
		if i%2 == 0 {
			st, err := conn.NewStream(ctx, &bigDesc.Streams[0], bigStream)
			if err != nil {
				t.Fatal(err)
			}
			st.SendMsg(wrapperspb.Int64(1))
			st.CloseSend()
			var m wrapperspb.BytesValue
			n := 0
			for err = st.RecvMsg(&m); err == nil; err = st.RecvMsg(&m) {
				n++
			}
			t.Logf("stream %d: read %d messages, then %v; client budget %d", i, n, err, testhooks.ClientBudgetUsed(conn))
			if i == 0 && status.Code(err) != codes.Internal { // stream 1: half a message
				t.Errorf("a server that ended the call inside a message: %v, want Internal", err)
			}
		} else {
			var rep greetpb.HelloReply
			err := conn.Invoke(ctx, "/greet.Greeter/SayHello", &greetpb.HelloRequest{Name: strings.Repeat("q", 8<<20)}, &rep)
			t.Logf("unary %d: err %v, reply %d bytes; client budget %d", i, err, len(rep.Message), testhooks.ClientBudgetUsed(conn))
			if err != nil || len(rep.Message) != 2<<20 {
				t.Errorf("a reply that came while the request still went out: %v, %d bytes; want it whole", err, len(rep.Message))
			}
		}
	}
	cancel()
	time.Sleep(100 * time.Millisecond)
	if u := testhooks.ClientBudgetUsed(conn); u != 0 {
		t.Errorf("after every call ended (and its context was cancelled), the client's budget holds %d bytes", u)
	}
}
