package grpcipc_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/protobuf/proto"
)

// A fast-path peer that breaks the protocol (docs/protocol.md) loses its
// connection, with a log line that says why, and nothing else: the
// server's other clients are served meanwhile, and no goroutine or memory
// stays behind.

const fpSayHello = "/greet.Greeter/SayHello"

// rawFast is a fast-path connection spoken by hand: the prefaces have
// been exchanged.
type rawFast struct {
	c      *net.UnixConn
	r      *wire.Reader
	frames []wire.Type  // what the server sent
	goAway *wire.GoAway // the server's GOAWAY, if it sent one
}

// dialFast connects to endpoint, sends a client's offer (version 2's:
// an HTTP/2 preface whose SETTINGS offer the fast path) and reads the
// server's preface.
func dialFast(t *testing.T, endpoint string) *rawFast {
	t.Helper()
	return dialFastWith(t, endpoint, wire.AppendOffer(nil, wire.Version), wire.Version)
}

// dialFastWith connects to endpoint, sends offer and reads the server's
// preface, which must be of version want.
func dialFastWith(t *testing.T, endpoint string, offer []byte, want uint8) *rawFast {
	t.Helper()
	c := rawConn(t, endpoint).(*net.UnixConn)
	if _, err := c.Write(offer); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got [wire.PrefaceSize]byte
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(br, got[:]); err != nil {
		t.Fatalf("reading the server's preface: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	if want := wire.AppendPreface(nil, want); !bytes.Equal(got[:], want) {
		t.Fatalf("the server's preface is %q, want %q", got, want)
	}
	return &rawFast{c: c, r: wire.NewReader(br, wire.DefaultMaxFrame)}
}

func rawFrame(stream uint32, typ wire.Type, flags wire.Flags, payload []byte) []byte {
	return append(wire.AppendHeader(nil, wire.Header{Length: uint32(len(payload)), Stream: stream, Type: typ, Flags: flags}), payload...)
}

func rawCall(stream uint32) []byte {
	return rawFrame(stream, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: fpSayHello}))
}

func (rf *rawFast) send(t *testing.T, frames ...[]byte) {
	t.Helper()
	rf.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rf.c.Write(bytes.Join(frames, nil)); err != nil {
		t.Fatalf("sending: %v", err)
	}
}

// next reads the server's next frame, noting it.
func (rf *rawFast) next(within time.Duration) (wire.Header, []byte, error) {
	rf.c.SetReadDeadline(time.Now().Add(within))
	h, p, err := rf.r.Next()
	if err != nil {
		return h, p, err
	}
	rf.frames = append(rf.frames, h.Type)
	if h.Type == wire.TypeGoAway {
		if g, err := wire.ParseGoAway(p); err == nil {
			rf.goAway = &g
		}
	}
	return h, p, nil
}

// alive pings the server and waits for its answer: the connection is
// still served.
func (rf *rawFast) alive(t *testing.T) {
	t.Helper()
	data := []byte("alive?!!")
	rf.send(t, rawFrame(0, wire.TypePing, 0, data))
	deadline := time.Now().Add(3 * time.Second)
	for {
		h, p, err := rf.next(time.Until(deadline))
		if err != nil {
			t.Fatalf("no answer to a PING: %v (frames so far %v)", err, rf.frames)
		}
		if h.Type == wire.TypePing && h.Flags&wire.FlagAck != 0 && bytes.Equal(p, data) {
			return
		}
	}
}

// closed reads until the server closes the connection: true if it did
// within the time given.
func (rf *rawFast) closed(within time.Duration) (bool, error) {
	deadline := time.Now().Add(within)
	for {
		_, _, err := rf.next(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, err
		}
		return true, err // EOF, ECONNRESET: closed
	}
}

// goodCaller calls SayHello over and over on a well-behaved client while
// a test misbehaves beside it.
type goodCaller struct {
	stop, done chan struct{}
	ok, failed atomic.Int64
	firstErr   atomic.Value
}

func keepCalling(client greetpb.GreeterClient) *goodCaller {
	g := &goodCaller{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for {
			select {
			case <-g.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := client.SayHello(ctx, &greetpb.HelloRequest{Name: "good"})
			cancel()
			if err != nil {
				g.failed.Add(1)
				g.firstErr.CompareAndSwap(nil, err)
			} else {
				g.ok.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return g
}

// check stops the calls and checks that all of them were served.
func (g *goodCaller) check(t *testing.T) {
	t.Helper()
	close(g.stop)
	<-g.done
	if n := g.failed.Load(); n > 0 {
		t.Errorf("%d calls of a well-behaved client failed meanwhile; the first: %v", n, g.firstErr.Load())
	}
	if g.ok.Load() == 0 {
		t.Error("a well-behaved client made no call meanwhile")
	}
}

// logSince waits until the log, past mark, holds every one of want, and
// returns that part.
func logSince(log *syncBuffer, mark int, want ...string) string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		s := log.String()[mark:]
		all := true
		for _, w := range want {
			all = all && strings.Contains(s, w)
		}
		if all || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestVersion1ClientsServed: a client of version 1, which offered the fast
// path with grpcipc's own 8-byte preface (and, later, a PING in the same
// write), is answered with version 1 and served.
func TestVersion1ClientsServed(t *testing.T) {
	endpoint, _, _, _ := startSlowServer(t)
	v1 := wire.AppendPreface(nil, 1)
	for name, offer := range map[string][]byte{
		"preface":          v1,
		"preface and PING": append(v1, rawFrame(0, wire.TypePing, 0, []byte("grpcipc\n"))...),
	} {
		t.Run(name, func(t *testing.T) {
			rf := dialFastWith(t, endpoint, offer, 1)
			req, _ := proto.Marshal(&greetpb.HelloRequest{Name: "v1"})
			rf.send(t, rawCall(1), rawFrame(1, wire.TypeMessage, 0, req), rawFrame(1, wire.TypeHalfClose, 0, nil))
			for {
				h, p, err := rf.next(5 * time.Second)
				if err != nil {
					t.Fatalf("reading the reply: %v (frames %v)", err, rf.frames)
				}
				if h.Type == wire.TypeMessage {
					var r greetpb.HelloReply
					if err := proto.Unmarshal(p, &r); err != nil || r.GetMessage() != "Hello v1" {
						t.Fatalf("reply %q, %v", r.GetMessage(), err)
					}
				}
				if h.Type == wire.TypeTrailers {
					tr, err := wire.ParseTrailer(p)
					if err != nil || tr.Code != 0 {
						t.Fatalf("trailers %+v, %v", tr, err)
					}
					break
				}
			}
			if len(offer) > wire.PrefaceSize && !slices.Contains(rf.frames, wire.TypePing) {
				t.Errorf("the offer's PING was not answered: frames %v", rf.frames)
			}
		})
	}
}

func TestFastPathBadInput(t *testing.T) {
	endpoint, _, _, log := startSlowServer(t, grpcipc.WithHandshakeTimeout(500*time.Millisecond))
	conn := newClient(t, endpoint)
	good := greetpb.NewGreeterClient(conn)
	if _, err := good.SayHello(ctxFor(t), &greetpb.HelloRequest{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	if got := conn.Protocol(); got != grpcipc.ProtocolFast {
		t.Fatalf("the well-behaved client speaks %q, want the fast path", got)
	}
	goroutines := stable(goroutinesBesidesIdleWorkers)
	const closedLine = "grpcipc: fast-path connection closed"
	var noGoAway []string // protocol errors closed without the GOAWAY docs/protocol.md promises

	for _, tc := range []struct {
		name string
		send func(t *testing.T, rf *rawFast)
		log  string // what the log line about the connection must say
		// protocolErr: docs/protocol.md's connection error, which the
		// server announces with a GOAWAY before it closes.
		protocolErr bool
	}{
		{"garbage", func(t *testing.T, rf *rawFast) {
			rf.send(t, []byte("\x13\x37 this is not a grpcipc frame at all \xff\xfe\xfd\x00"))
		}, "grpcipc wire protocol error", true},
		{"MESSAGE on a stream never opened", func(t *testing.T, rf *rawFast) {
			rf.send(t, rawFrame(1, wire.TypeMessage, 0, []byte("abc")))
		}, "MESSAGE frame on stream 1, which was never opened", true},
		{"truncated frame, then close", func(t *testing.T, rf *rawFast) {
			rf.send(t, rawCall(1), wire.AppendHeader(nil, wire.Header{Length: 100, Stream: 1, Type: wire.TypeMessage}), make([]byte, 10))
			rf.c.CloseWrite()
		}, "unexpected EOF", false},
		{"frame over the limit", func(t *testing.T, rf *rawFast) {
			// A frame of the limit passes...
			rf.send(t, rawCall(1), rawFrame(1, wire.TypeMessage, 0, make([]byte, wire.DefaultMaxFrame)))
			rf.alive(t)
			// ...one byte more does not, refused from its header.
			rf.send(t, wire.AppendHeader(nil, wire.Header{Length: wire.DefaultMaxFrame + 1, Stream: 1, Type: wire.TypeMessage}))
		}, "frame too large", true},
		{"unknown frame type", func(t *testing.T, rf *rawFast) {
			rf.send(t, rawCall(1), rawFrame(1, 10, 0, nil))
		}, "unknown frame type 10", true},
		{"CALL reusing a stream id", func(t *testing.T, rf *rawFast) {
			rf.send(t, rawCall(3))
			rf.alive(t)
			rf.send(t, rawCall(3))
		}, "CALL on stream 3 after stream 3: streams must increase", true},
		{"CALL with a lower stream id", func(t *testing.T, rf *rawFast) {
			rf.send(t, rawCall(5))
			rf.alive(t)
			rf.send(t, rawCall(4))
		}, "CALL on stream 4 after stream 5: streams must increase", true},
		{"MESSAGE exceeding the window", func(t *testing.T, rf *rawFast) {
			// Whole messages the handler has not taken (it takes none):
			// the fifth 1 MiB frame is past the 4 MiB window.
			rf.send(t, rawCallTo(1, sinkMethod))
			msg := rawFrame(1, wire.TypeMessage, 0, make([]byte, 1<<20))
			for range wire.InitialWindow / (1 << 20) {
				rf.send(t, msg)
			}
			rf.alive(t)
			rf.send(t, msg)
		}, "exceed its window", true},
		{"HEADERS from the client", func(t *testing.T, rf *rawFast) {
			rf.send(t, rawCall(1), rawFrame(1, wire.TypeHeaders, 0, wire.AppendMetadata(nil, nil)))
		}, "a client sent a HEADERS frame, which only servers send", true},
		{"TRAILERS from the client", func(t *testing.T, rf *rawFast) {
			rf.send(t, rawCall(1), rawFrame(1, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{})))
		}, "a client sent a TRAILERS frame, which only servers send", true},
		{"GOAWAY from the client", func(t *testing.T, rf *rawFast) {
			rf.send(t, rawFrame(0, wire.TypeGoAway, 0, wire.AppendGoAway(nil, &wire.GoAway{})))
		}, "a client sent a GOAWAY frame, which only servers send", true},
		{"more than 256 streams at once", func(t *testing.T, rf *rawFast) {
			var calls [][]byte
			for id := uint32(1); id <= 256; id++ {
				calls = append(calls, rawCall(id))
			}
			rf.send(t, calls...)
			rf.alive(t) // 256 are allowed
			rf.send(t, rawCall(257))
		}, "more than 256 streams open at once", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := len(log.String())
			g := keepCalling(good)
			rf := dialFast(t, endpoint)
			tc.send(t, rf)
			closed, err := rf.closed(5 * time.Second)
			g.check(t)
			if !closed {
				t.Fatalf("the server did not close the connection within 5 s: %v", err)
			}
			got := logSince(log, mark, closedLine, tc.log)
			if !strings.Contains(got, closedLine) || !strings.Contains(got, tc.log) {
				t.Errorf("the server's log does not say %q:\n%s", tc.log, got)
			}
			if tc.protocolErr && rf.goAway == nil {
				noGoAway = append(noGoAway, tc.name)
			}
			t.Logf("closed (%v) after frames %v", err, rf.frames)
		})
	}

	// Silent peers: one stops inside a frame header, one announces a 1 MiB
	// frame and sends 1,000 bytes of it. Neither is a client waiting for
	// calls (which would send nothing at all between frames): both hold a
	// read mid-frame, and the server should not wait for them for ever.
	t.Run("silent inside a frame", func(t *testing.T) {
		mark := len(log.String())
		g := keepCalling(good)
		half := dialFast(t, endpoint)
		half.send(t, wire.AppendHeader(nil, wire.Header{Length: 100, Stream: 1, Type: wire.TypeMessage})[:5])
		announced := dialFast(t, endpoint)
		announced.send(t, rawCall(1), wire.AppendHeader(nil, wire.Header{Length: 1 << 20, Stream: 1, Type: wire.TypeMessage}), make([]byte, 1000))
		var wg sync.WaitGroup
		var halfClosed, announcedClosed bool
		wg.Add(2)
		go func() { defer wg.Done(); halfClosed, _ = half.closed(5 * time.Second) }()
		go func() { defer wg.Done(); announcedClosed, _ = announced.closed(5 * time.Second) }()
		wg.Wait()
		g.check(t)
		if !halfClosed {
			t.Error("a peer that sent 5 bytes of a frame header and went silent still holds its connection after 5 s (the server's handshake timeout is 500 ms)")
		}
		if !announcedClosed {
			t.Error("a peer that announced a 1 MiB frame, sent 1,000 bytes of it and went silent still holds its connection after 5 s (the server's handshake timeout is 500 ms)")
		}
		t.Logf("the server's log meanwhile:\n%s", log.String()[mark:])
	})

	// What 50 peers that each announce a 1 MiB frame and go silent make
	// the server hold: a reader that grows its buffer as bytes arrive
	// holds little (about its 32 KiB of buffered input); one that
	// allocates the frame when it reads the header holds 50 MiB.
	t.Run("memory of 50 silent peers", func(t *testing.T) {
		const peers = 50
		g := keepCalling(good)
		before := heapInuse()
		var rfs []*rawFast
		for range peers {
			rf := dialFast(t, endpoint)
			rf.send(t, rawCall(1))
			rf.alive(t)
			rf.send(t, wire.AppendHeader(nil, wire.Header{Length: 1 << 20, Stream: 1, Type: wire.TypeMessage}), make([]byte, 100))
			rfs = append(rfs, rf)
		}
		time.Sleep(300 * time.Millisecond) // for the server to read the headers
		after := heapInuse()
		runtime.KeepAlive(rfs) // the peers stay connected until measured
		g.check(t)
		per := (int64(after) - int64(before)) / peers
		t.Logf("heap in use: %d KiB before, %d KiB with %d silent peers that announced 1 MiB frames: %d KiB each", before>>10, after>>10, peers, per>>10)
		if per > 256<<10 {
			t.Errorf("each silent peer that announced a 1 MiB frame holds %d KiB of the server's heap", per>>10)
		}
	})

	// A stream whose handler takes nothing (a unary call before its
	// HALF_CLOSE) while a client that honours the window sends messages
	// in parts. docs/protocol.md bounds what the server holds for it by
	// the window (4 MiB) and one message being reassembled; the server
	// must stop giving the window back well before 24 MiB.
	t.Run("messages in parts beyond the window", func(t *testing.T) {
		const msgSize, msgs = 3 << 20, 8 // under the server's 4 MiB limit
		g := keepCalling(good)
		before := heapInuse()
		rf := dialFast(t, endpoint)
		rf.send(t, rawCall(1))
		var granted atomic.Int64
		readErr := make(chan error, 1)
		pong := make(chan struct{}, 1)
		go func() {
			for {
				rf.c.SetReadDeadline(time.Time{})
				h, p, err := rf.r.Next()
				if err != nil {
					readErr <- err
					return
				}
				switch {
				case h.Type == wire.TypeWindow && h.Stream == 1:
					if inc, err := wire.ParseWindow(p); err == nil {
						granted.Add(int64(inc))
					}
				case h.Type == wire.TypePing && h.Flags&wire.FlagAck != 0:
					pong <- struct{}{}
				}
			}
		}()
		used, sent := int64(0), 0
		var parts [][]byte // the message: 1 MiB parts with MORE, then 1 byte
		for left := msgSize - 1; left > 0; left -= min(left, 1<<20) {
			parts = append(parts, rawFrame(1, wire.TypeMessage, wire.FlagMore, make([]byte, min(left, 1<<20))))
		}
		parts = append(parts, rawFrame(1, wire.TypeMessage, 0, []byte{0}))
		stalled := false
	send:
		for range msgs {
			for _, part := range parts {
				n := int64(len(part) - wire.HeaderSize)
				deadline := time.Now().Add(time.Second)
				for wire.InitialWindow+granted.Load()-used < n {
					if time.Now().After(deadline) {
						stalled = true
						break send
					}
					time.Sleep(time.Millisecond)
				}
				rf.send(t, part)
				used += n
			}
			sent++
		}
		rf.send(t, rawFrame(0, wire.TypePing, 0, []byte("alive?!!")))
		select {
		case <-pong:
		case err := <-readErr:
			t.Fatalf("the connection ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no answer to a PING")
		}
		held := heapInuse()
		rf.c.Close()
		<-readErr
		g.check(t)
		t.Logf("the server let a client send %d whole messages of %d MiB (%d MiB) to a stream that took none (window given back: %d MiB; stalled: %v); heap in use grew by %d MiB",
			sent, msgSize>>20, sent*msgSize>>20, granted.Load()>>20, stalled, (int64(held)-int64(before))>>20)
		if limit := wire.InitialWindow + 2*msgSize; sent*msgSize > limit {
			t.Errorf("the server took %d MiB of messages for a stream that took none, past its window of %d MiB and a message in parts: flow control does not bound it",
				sent*msgSize>>20, wire.InitialWindow>>20)
		}
	})

	if len(noGoAway) > 0 {
		t.Errorf("docs/protocol.md: on a connection error the server closes the connection after a GOAWAY; these closed without one: %s", strings.Join(noGoAway, "; "))
	}
	if got := settle(goroutines, goroutinesBesidesIdleWorkers); got != goroutines {
		t.Errorf("goroutines: %d before the bad peers, %d after", goroutines, got)
	}
	if _, err := good.SayHello(ctxFor(t), &greetpb.HelloRequest{Name: "last"}); err != nil {
		t.Errorf("the well-behaved client after all: %v", err)
	}
}

// TestFastPathGoAwayLastStream: GracefulStop's GOAWAY names the last
// stream the server started (docs/protocol.md, "Shutdown"): every stream
// up to it is finished (gets its TRAILERS), none above it is run, so that
// the client may retry exactly those. A client that keeps opening calls
// while the server stops races the GOAWAY with many of them; the race is
// narrow, so the test runs it on 25 servers.
func TestFastPathGoAwayLastStream(t *testing.T) {
	const rounds = 25
	var failures []string
	for round := range rounds {
		r := goAwayRound(t)
		switch {
		case r.err != "":
			failures = append(failures, fmt.Sprintf("round %d: %s", round, r.err))
		case r.goAway == nil:
			failures = append(failures, fmt.Sprintf("round %d: GracefulStop closed the connection without a GOAWAY (after %d streams finished)", round, r.finished))
		case len(r.missing) > 0:
			failures = append(failures, fmt.Sprintf("round %d: streams %v are at or below the GOAWAY's last stream (%d), so started, but the server closed the connection without finishing them", round, r.missing, r.goAway.LastStream))
		case len(r.beyond) > 0:
			failures = append(failures, fmt.Sprintf("round %d: streams %v are above the GOAWAY's last stream (%d), so not started, yet got TRAILERS", round, r.beyond, r.goAway.LastStream))
		}
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d graceful stops broke the GOAWAY's promise:\n%s", len(failures), rounds, strings.Join(failures, "\n"))
	}
}

type goAwayResult struct {
	goAway          *wire.GoAway
	finished        int
	missing, beyond []uint32
	err             string
}

// goAwayRound serves a new server, opens unary calls on one raw
// connection as fast as they finish, gracefully stops the server after
// 200, and reads what the server sent until it closes the connection.
func goAwayRound(t *testing.T) goAwayResult {
	t.Helper()
	env := fpServe(t, testutil.Endpoint(t), newFPService())
	rf := dialFast(t, env.endpoint)
	defer rf.c.Close()
	var (
		sent, ended atomic.Int64 // streams opened, streams that got TRAILERS
		stopWriting atomic.Bool  // GOAWAY seen, or the connection ended
		writerDone  = make(chan struct{})
	)
	go func() {
		defer close(writerDone)
		var b []byte
		for id := uint32(1); !stopWriting.Load(); id++ {
			for sent.Load()-ended.Load() >= 128 && !stopWriting.Load() {
				time.Sleep(50 * time.Microsecond) // well under 256 open streams
			}
			b = append(b[:0], rawFrame(id, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: "/grpc.testing.TestService/EmptyCall"}))...)
			b = append(b, rawFrame(id, wire.TypeMessage, 0, nil)...)
			b = append(b, rawFrame(id, wire.TypeHalfClose, 0, nil)...)
			rf.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := rf.c.Write(b); err != nil {
				return
			}
			sent.Store(int64(id))
		}
	}()
	trailers := map[uint32]bool{}
	stopped := make(chan struct{})
	var res goAwayResult
	for {
		h, _, err := rf.next(10 * time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				res.err = fmt.Sprintf("the server neither finished nor closed the connection within 10 s (GOAWAY seen: %v)", rf.goAway != nil)
			}
			break
		}
		switch h.Type {
		case wire.TypeTrailers:
			trailers[h.Stream] = true
			if ended.Add(1) == 200 {
				go func() { env.srv.GracefulStop(); close(stopped) }()
			}
		case wire.TypeGoAway:
			stopWriting.Store(true)
		}
	}
	stopWriting.Store(true)
	<-writerDone
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		if res.err == "" {
			res.err = "GracefulStop did not return within 10 s"
		}
	}
	res.goAway, res.finished = rf.goAway, len(trailers)
	if rf.goAway == nil {
		return res
	}
	last := rf.goAway.LastStream
	for id := uint32(1); id <= last; id++ {
		if !trailers[id] {
			res.missing = append(res.missing, id)
		}
	}
	for id := range trailers {
		if id > last {
			res.beyond = append(res.beyond, id)
		}
	}
	return res
}

// TestFastPathNonReaderBounded: a client that sends PINGs (each answered)
// and never reads what the server writes cannot make the server queue
// without bound: once the socket and the writer's queue are full, the
// server stops reading it (its writes wait), and a well-behaved client
// keeps being served meanwhile. (A red-team run before the bound grew a
// server to 4.5 GB this way.)
func TestFastPathNonReaderBounded(t *testing.T) {
	endpoint, _, _, _ := startSlowServer(t)
	good := greetpb.NewGreeterClient(newClient(t, endpoint))
	if _, err := good.SayHello(ctxFor(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	rf := dialFast(t, endpoint)
	rf.c.SetReadBuffer(4 << 10) // the attacker reads nothing and keeps its buffer small
	before := heapInuse()
	// First unary calls, unread replies and all, until a handler's write
	// of its reply blocks: that handler is then the connection's writer,
	// and what others queue waits for it.
	req, _ := proto.Marshal(&greetpb.HelloRequest{Name: strings.Repeat("x", 200)})
	var calls []byte
	id := uint32(1)
	for range 20000 {
		calls = append(calls, rawCall(id)...)
		calls = append(calls, rawFrame(id, wire.TypeMessage, 0, req)...)
		calls = append(calls, rawFrame(id, wire.TypeHalfClose, 0, nil)...)
		id += 2
		if len(calls) > 64<<10 {
			rf.c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := rf.c.Write(calls); err != nil {
				break
			}
			calls = calls[:0]
			time.Sleep(time.Millisecond)
		}
	}
	ping := rawFrame(0, wire.TypePing, 0, make([]byte, 8))
	batch := bytes.Repeat(ping, 4096)
	sent := 0
	const most = 96 << 20 // enough answers to fill the socket and the queue many times over
	for sent < most {
		rf.c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := rf.c.Write(batch)
		sent += n
		if err != nil {
			break // the server stopped reading: what it owes is bounded
		}
	}
	grown := int64(heapInuse()) - int64(before)
	t.Logf("sent %d MiB of PINGs without reading; the server's heap grew by %d MiB", sent>>20, grown>>20)
	if sent >= most {
		t.Errorf("the server read %d MiB of PINGs from a client that reads nothing: no back-pressure", sent>>20)
	}
	if grown > 48<<20 {
		t.Errorf("the server's heap grew by %d MiB for one client that does not read", grown>>20)
	}
	if _, err := good.SayHello(ctxFor(t), &greetpb.HelloRequest{}); err != nil {
		t.Errorf("a well-behaved client during the flood: %v", err)
	}
	rf.c.Close()
}
