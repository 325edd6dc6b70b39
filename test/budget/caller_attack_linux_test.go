package grpcipc_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"context"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The memory budgets of the fast path (docs/protocol.md, "Memory budgets")
// attacked from another user's process: whatever frames an admitted caller
// sends, the server's heap stays within the budget and a fixed overhead,
// and the server's own user is served meanwhile. The same from a hostile
// server to a client.

// sinkMethod is a streaming method whose handler takes no message: it
// holds the call until the client cancels it, as a slow handler would.
const sinkMethod = "/grpcipc.test.Sink/Hold"

var sinkDesc = grpc.ServiceDesc{
	ServiceName: "grpcipc.test.Sink",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Hold", ClientStreams: true, ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			<-ss.Context().Done()
			return status.FromContextError(ss.Context().Err()).Err()
		},
	}},
}

// registerSink adds the Sink service to s.
func registerSink(s grpc.ServiceRegistrar) { s.RegisterService(&sinkDesc, struct{}{}) }

// sinkServerKind is NewServer with the Sink service.
var sinkServerKind = serverKind{"NewServer+Sink", func(t testing.TB, opts ...grpcipc.ServerOption) testServer {
	t.Helper()
	s := newServerKind.make(t, opts...)
	registerSink(s)
	return s
}}

func rawCallTo(stream uint32, method string, md ...wire.KV) []byte {
	return rawFrame(stream, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: method, Metadata: md}))
}

// zeros is the payload of big frames.
var zeros = make([]byte, 1<<20)

// partsOf is a frame of type t on stream with payload p, cut into parts
// (FlagMore) of at most a frame's payload each.
func partsOf(stream uint32, t wire.Type, p []byte) []byte {
	var out []byte
	for len(p) > wire.DefaultMaxFrame {
		out = append(out, rawFrame(stream, t, wire.FlagMore, p[:wire.DefaultMaxFrame])...)
		p = p[wire.DefaultMaxFrame:]
	}
	return append(out, rawFrame(stream, t, 0, p)...)
}

// make16MiB is 16 MiB of printable bytes.
func make16MiB() []byte { return []byte(strings.Repeat("v", 16<<20)) }

// attack writes the frames of an attack on a server (the client's side)
// to w.
func attack(mode string, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var err error
	put := func(b []byte) {
		if err == nil {
			_, err = bw.Write(b)
		}
	}
	msg := func(stream uint32, flags wire.Flags, n int) {
		put(wire.AppendHeader(nil, wire.Header{Length: uint32(n), Stream: stream, Type: wire.TypeMessage, Flags: flags}))
		put(zeros[:n])
	}
	switch mode {
	case "tiny": // one-byte messages on one stream
		put(rawCallTo(1, sinkMethod))
		for range 300_000 {
			msg(1, 0, 1)
		}
	case "unary": // one-byte messages on a unary call, never half-closed
		put(rawCallTo(1, fpSayHello))
		for range 300_000 {
			msg(1, 0, 1)
		}
	case "empty": // empty messages, which use no window
		put(rawCallTo(1, sinkMethod))
		for range 1_000_000 {
			msg(1, 0, 0)
		}
	case "windows": // full windows of whole messages on 64 streams
		for s := uint32(1); s <= 127; s += 2 {
			put(rawCallTo(s, sinkMethod))
			for range wire.InitialWindow / (1 << 20) {
				msg(s, 0, 1<<20)
			}
		}
	case "parts": // an unfinished message of the size limit on 256 streams
		for s := uint32(1); s <= 511; s += 2 {
			put(rawCallTo(s, sinkMethod))
			for range 4 {
				msg(s, wire.FlagMore, 1<<20)
			}
		}
	case "dead": // big frames to a stream that ended, between messages to live ones
		put(rawCallTo(1, fpSayHello))
		put(rawFrame(1, wire.TypeMessage, 0, nil))
		put(rawFrame(1, wire.TypeHalfClose, 0, nil))
		for s := uint32(3); s <= 9; s += 2 {
			put(rawCallTo(s, sinkMethod))
		}
		for range wire.InitialWindow/(32<<10) - 1 {
			for s := uint32(3); s <= 9; s += 2 {
				msg(1, 0, 1<<20)
				msg(s, 0, 32<<10)
			}
		}
	case "metadata": // calls with 1 MiB of metadata each
		md := make([]wire.KV, 1000)
		for i := range md {
			md[i] = wire.KV{Key: fmt.Sprintf("k%d", i), Value: strings.Repeat("v", 1000)}
		}
		for s := uint32(1); s <= 127; s += 2 {
			put(rawCallTo(s, sinkMethod, md...))
		}
	case "callparts": // a CALL in parts of 16 MiB of metadata, never finished
		parts := callParts(1, &wire.Call{Method: sinkMethod, Metadata: []wire.KV{{Key: "v", Value: string(make16MiB())}}})
		put(parts[:len(parts)-(wire.HeaderSize+1<<20)]) // all but the last 1 MiB part or so
	case "bigcalls": // calls with 15 MiB of metadata each, in parts
		md := []wire.KV{{Key: "v", Value: strings.Repeat("v", 15<<20)}}
		for s := uint32(1); s <= 15; s += 2 {
			put(callParts(s, &wire.Call{Method: sinkMethod, Metadata: md}))
		}
	case "entries": // calls with 400,000 empty entries each (1.2 MB on the wire)
		md := make([]wire.KV, 400_000)
		for i := range md {
			md[i] = wire.KV{Key: "k"}
		}
		for s := uint32(1); s <= 15; s += 2 {
			put(callParts(s, &wire.Call{Method: sinkMethod, Metadata: md}))
		}
	default:
		return fmt.Errorf("no attack %q", mode)
	}
	if err == nil {
		err = bw.Flush()
	}
	return err
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func init() {
	// budget-attack ENDPOINT MODE CONNS: make CONNS fast-path connections,
	// send each MODE's frames (as many as the server reads within 4 s),
	// print "sent N" (bytes, all connections), then hold the connections
	// until standard input closes.
	grpcipc.RegisterHelper("budget-attack", func(args []string) error {
		if len(args) != 3 {
			return errors.New("want ENDPOINT MODE CONNS")
		}
		addr, err := unixAddr(args[0])
		if err != nil {
			return err
		}
		if err := attack(args[1], io.Discard); err != nil {
			return err
		}
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		var sent atomic.Int64
		var wg sync.WaitGroup
		conns := make([]net.Conn, n)
		deadline := time.Now().Add(4 * time.Second)
		for i := range conns {
			c, err := net.Dial("unix", addr)
			if err != nil {
				return err
			}
			conns[i] = c
			if _, err := c.Write(wire.AppendPreface(nil, wire.Version)); err != nil {
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				go io.Copy(io.Discard, c) // the server's answers: read, so its writes never wait
				c.SetWriteDeadline(deadline)
				attack(args[1], countingWriter{c, &sent})
			}()
		}
		wg.Wait()
		fmt.Println("sent", sent.Load())
		io.Copy(io.Discard, os.Stdin)
		for _, c := range conns {
			c.Close()
		}
		return nil
	})
}

// heapWatch samples the heap in use (after garbage collection) until
// stopped, keeping the largest sample.
type heapWatch struct {
	base, peak uint64
	stop, done chan struct{}
}

func watchHeap() *heapWatch {
	w := &heapWatch{base: heapInuse(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			w.peak = max(w.peak, heapInuse())
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

// grown stops the watch and returns how much the heap grew at most.
func (w *heapWatch) grown() int64 {
	close(w.stop)
	<-w.done
	w.peak = max(w.peak, heapInuse())
	return int64(w.peak) - int64(w.base)
}

// budgetOverhead is what a connection's attack may cost beyond its budget:
// the frame reader's buffers (1 MiB and 64 KiB, 32 KiB buffered), the
// writer's queue, streams' state and goroutines, and the test's samples.
const budgetOverhead = 24 << 20

const MiB = 1 << 20

func TestMemoryBudgetsHoldAgainstACaller(t *testing.T) {
	testutil.RequireRoot(t)
	p := mustPolicy(t, `{"name": "sink-for-nobody",
		"allow_rules": [{"name": "sink", "source": {"principals": ["uid:65534"]}, "request": {"paths": ["/grpcipc.test.Sink/*", "/greet.Greeter/SayHello"]}},
		                {"name": "self", "source": {"principals": ["same-user"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	gs := serveGuardedKind(t, sinkServerKind, endpoint, nil, grpcipc.WithPolicy(p))
	good := greetpb.NewGreeterClient(newClient(t, endpoint))
	if _, err := good.SayHello(ctxFor(t), &greetpb.HelloRequest{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode   string
		conns  int
		budget int64 // what the attack may hold: a connection's or the caller's budget
		full   bool  // the attack fills the budget: a call ends with ResourceExhausted, logged
	}{
		{"unary", 1, grpcipc.DefaultConnMemoryBudget, false}, // the second message ends the call
		{"tiny", 1, grpcipc.DefaultConnMemoryBudget, true},
		{"empty", 1, grpcipc.DefaultConnMemoryBudget, true},
		{"windows", 1, grpcipc.DefaultConnMemoryBudget, true},
		{"parts", 1, grpcipc.DefaultConnMemoryBudget, true},
		{"dead", 1, grpcipc.DefaultConnMemoryBudget, false},
		{"metadata", 1, grpcipc.DefaultConnMemoryBudget, true},
		{"callparts", 1, grpcipc.DefaultConnMemoryBudget, false},
		{"callparts", 8, grpcipc.DefaultCallerMemoryBudget, false},
		{"bigcalls", 1, grpcipc.DefaultConnMemoryBudget, true},
		{"entries", 1, grpcipc.DefaultConnMemoryBudget, true},
		{"windows", 8, grpcipc.DefaultCallerMemoryBudget, true},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.mode, tc.conns), func(t *testing.T) {
			mark := len(gs.log.String())
			g := keepCalling(good)
			w := watchHeap()
			cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "budget-attack", endpoint, tc.mode, strconv.Itoa(tc.conns))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out := testutil.Start(t, cmd)
			line, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("the attacker: %v", err)
			}
			time.Sleep(1500 * time.Millisecond) // the server reads on as budgets free
			grown := w.grown()
			stdin.Close()
			cmd.Wait()
			g.check(t)
			var want []string
			if tc.full {
				want = append(want, "memory budget is full")
			}
			log := logSince(gs.log, mark, want...)
			t.Logf("uid 65534 %s (%d connections): the server's heap grew by %.1f MiB at most (budget %d MiB); %d calls of the server's own user served meanwhile",
				strings.TrimSpace(line), tc.conns, float64(grown)/MiB, tc.budget/MiB, g.ok.Load())
			if limit := tc.budget + int64(tc.conns)*budgetOverhead; grown > limit {
				t.Errorf("the server's heap grew by %.1f MiB; the budget allows %.1f MiB (%d MiB and %d MiB a connection)",
					float64(grown)/MiB, float64(limit)/MiB, tc.budget/MiB, budgetOverhead/MiB)
			}
			if full := strings.Contains(log, "memory budget is full"); full != tc.full {
				t.Errorf("the log says the budget was full: %v, want %v:\n%.3000s", full, tc.full, log)
			}
		})
	}
}

// serveOneFast plays a fast-path server on the Unix address addr for one
// connection: it prints "ready" once listening, accepts, reads the
// client's preface and answers with its own, and returns the connection
// with the stream ids of the calls the client opens, as they come (the
// channel closes when the connection does).
func serveOneFast(addr string) (net.Conn, <-chan uint32, error) {
	l, err := net.Listen("unix", addr)
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	fmt.Println("ready")
	c, err := l.Accept()
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	var preface [wire.OfferSize]byte
	if _, err := io.ReadFull(br, preface[:]); err != nil {
		c.Close()
		return nil, nil, err
	}
	if _, err := c.Write(wire.AppendPreface(nil, wire.Version)); err != nil {
		c.Close()
		return nil, nil, err
	}
	calls := make(chan uint32, 1024)
	go func() {
		defer close(calls)
		r := wire.NewReader(br, wire.DefaultMaxFrame)
		for {
			h, _, err := r.Next()
			if err != nil {
				return
			}
			if h.Type == wire.TypeCall {
				calls <- h.Stream
			}
		}
	}()
	return c, calls, nil
}

// hostileStreams is how many calls the client opens to a hostile server.
const hostileStreams = 32

// flood writes the frames a hostile server sends on the streams the
// client opened.
func flood(mode string, w io.Writer, streams []uint32) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var err error
	put := func(b []byte) {
		if err == nil {
			_, err = bw.Write(b)
		}
	}
	msg := func(stream uint32, flags wire.Flags, n int) {
		put(wire.AppendHeader(nil, wire.Header{Length: uint32(n), Stream: stream, Type: wire.TypeMessage, Flags: flags}))
		put(zeros[:n])
	}
	switch mode {
	case "tiny":
		for range 300_000 {
			msg(streams[0], 0, 1)
		}
	case "empty":
		for range 1_000_000 {
			msg(streams[0], 0, 0)
		}
	case "windows":
		for _, s := range streams {
			for range wire.InitialWindow / (1 << 20) {
				msg(s, 0, 1<<20)
			}
		}
	case "parts":
		for _, s := range streams {
			for range 4 {
				msg(s, wire.FlagMore, 1<<20)
			}
		}
	case "headers":
		md := make([]wire.KV, 1000)
		for i := range md {
			md[i] = wire.KV{Key: fmt.Sprintf("k%d", i), Value: strings.Repeat("v", 1000)}
		}
		p := wire.AppendMetadata(nil, md)
		for _, s := range streams {
			put(rawFrame(s, wire.TypeHeaders, 0, p))
		}
	case "bigheaders": // 15 MiB of headers in parts on every stream
		p := wire.AppendMetadata(nil, []wire.KV{{Key: "v", Value: strings.Repeat("v", 15<<20)}})
		for _, s := range streams {
			put(partsOf(s, wire.TypeHeaders, p))
		}
	case "headerparts": // 16 MiB of headers in parts, never finished
		p := wire.AppendMetadata(nil, []wire.KV{{Key: "v", Value: string(make16MiB())}})
		b := partsOf(streams[0], wire.TypeHeaders, p)
		put(b[:len(b)-(wire.HeaderSize+1<<20)])
	case "bigtrailers": // 15 MiB of trailers in parts, ending every stream
		p := wire.AppendTrailer(nil, &wire.Trailer{Code: uint32(codes.Aborted), Metadata: []wire.KV{{Key: "v", Value: strings.Repeat("v", 15<<20)}}})
		for _, s := range streams {
			put(partsOf(s, wire.TypeTrailers, p))
		}
	default:
		return fmt.Errorf("no flood %q", mode)
	}
	if err == nil {
		err = bw.Flush()
	}
	return err
}

func init() {
	// hostile-server ENDPOINT MODE: serve one fast-path connection on
	// ENDPOINT; once the client has opened its calls, flood them as MODE
	// says (for 4 s at most), print "sent N", and hold the connection
	// until standard input closes.
	grpcipc.RegisterHelper("hostile-server", func(args []string) error {
		if len(args) != 2 {
			return errors.New("want ENDPOINT MODE")
		}
		if err := flood(args[1], io.Discard, []uint32{1}); err != nil {
			return err
		}
		addr, err := unixAddr(args[0])
		if err != nil {
			return err
		}
		c, calls, err := serveOneFast(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		var streams []uint32
		for id := range calls {
			if streams = append(streams, id); len(streams) == hostileStreams {
				break
			}
		}
		var sent atomic.Int64
		c.SetWriteDeadline(time.Now().Add(4 * time.Second))
		flood(args[1], countingWriter{c, &sent}, streams)
		fmt.Println("sent", sent.Load())
		io.Copy(io.Discard, os.Stdin)
		return nil
	})
}

func TestMemoryBudgetHoldsAgainstAServer(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		mode string
		code codes.Code // what some calls end with (OK: none need end)
	}{
		{"tiny", codes.ResourceExhausted}, {"empty", codes.ResourceExhausted}, {"windows", codes.ResourceExhausted},
		{"parts", codes.ResourceExhausted}, {"headers", codes.ResourceExhausted}, {"bigheaders", codes.ResourceExhausted},
		{"headerparts", codes.OK}, {"bigtrailers", codes.Aborted},
	} {
		mode := tc.mode
		t.Run(mode, func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "hostile-server", endpoint, mode)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out := testutil.Start(t, cmd)
			if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
				t.Fatalf("the hostile server: %q, %v", line, err)
			}
			w := watchHeap()
			// A client that trusts any server, with calls whose replies it
			// does not read yet.
			conn := newClient(t, endpoint, grpcipc.WithExpectedServer("*"))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var streams []grpc.ClientStream
			for range hostileStreams {
				s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, sinkMethod)
				if err != nil {
					t.Fatal(err)
				}
				streams = append(streams, s)
			}
			line, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("the hostile server: %v", err)
			}
			time.Sleep(1500 * time.Millisecond) // the client reads on as its budget frees
			grown := w.grown()
			codesSeen := make(chan codes.Code, len(streams))
			for _, s := range streams {
				go func() { codesSeen <- status.Code(s.RecvMsg(&emptypb.Empty{})) }()
			}
			exhausted := 0
			for timeout := time.After(time.Second); ; {
				select {
				case c := <-codesSeen:
					if c == tc.code {
						exhausted++
					}
					continue
				case <-timeout:
				}
				break
			}
			cancel()
			stdin.Close()
			cmd.Wait()
			t.Logf("a hostile server %s: the client's heap grew by %.1f MiB at most (budget %d MiB); %d of %d calls ended %v",
				strings.TrimSpace(line), float64(grown)/MiB, grpcipc.DefaultConnMemoryBudget/MiB, exhausted, len(streams), tc.code)
			if limit := int64(grpcipc.DefaultConnMemoryBudget + budgetOverhead); grown > limit {
				t.Errorf("the client's heap grew by %.1f MiB; the budget allows %.1f MiB", float64(grown)/MiB, float64(limit)/MiB)
			}
			if exhausted == 0 && tc.code != codes.OK {
				t.Errorf("no call ended with %v: the flood did not reach the budget", tc.code)
			}
		})
	}
}

// A unary call takes one request: a second ends the call with grpc-go's
// cardinality violation, and the connection goes on.
func TestFastPathUnaryTakesOneRequest(t *testing.T) {
	endpoint, _, _, _ := startSlowServer(t)
	rf := dialFast(t, endpoint)
	req, _ := proto.Marshal(&greetpb.HelloRequest{Name: "once"})
	rf.send(t, rawCall(1), rawFrame(1, wire.TypeMessage, 0, req), rawFrame(1, wire.TypeMessage, 0, req), rawFrame(1, wire.TypeHalfClose, 0, nil))
	for {
		h, p, err := rf.next(3 * time.Second)
		if err != nil {
			t.Fatalf("no TRAILERS: %v (frames %v)", err, rf.frames)
		}
		if h.Type != wire.TypeTrailers {
			continue
		}
		tr, err := wire.ParseTrailer(p)
		if err != nil {
			t.Fatal(err)
		}
		if codes.Code(tr.Code) != codes.Internal || !strings.Contains(tr.Message, "cardinality violation") {
			t.Errorf("two requests on a unary call: %v %q, want Internal, a cardinality violation", codes.Code(tr.Code), tr.Message)
		}
		break
	}
	rf.alive(t)
}
