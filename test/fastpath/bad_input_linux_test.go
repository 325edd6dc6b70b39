package fastpath

import (
	"bytes"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// A fast-path peer that breaks the protocol (docs/protocol.md) loses its
// connection, with a log line that says why, and nothing else: the
// server's other clients are served meanwhile, and no goroutine or memory
// stays behind.

func TestFastPathBadInput(t *testing.T) {
	endpoint, _, _, log := e2e.StartSlowServer(t, grpcipc.WithHandshakeTimeout(500*time.Millisecond))
	conn := e2e.NewClient(t, endpoint)
	good := greetpb.NewGreeterClient(conn)
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	if got := conn.Protocol(); got != grpcipc.ProtocolFast {
		t.Fatalf("the well-behaved client speaks %q, want the fast path", got)
	}
	goroutines := e2e.Stable(e2e.GoroutinesBesidesIdleWorkers)
	const closedLine = "grpcipc: fast-path connection closed"
	var noGoAway []string // protocol errors closed without the GOAWAY docs/protocol.md promises

	for _, tc := range []struct {
		name string
		send func(t *testing.T, rf *e2e.RawFast)
		log  string // what the log line about the connection must say
		// protocolErr: docs/protocol.md's connection error, which the
		// server announces with a GOAWAY before it closes.
		protocolErr bool
	}{
		{"garbage", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, []byte("\x13\x37 this is not a grpcipc frame at all \xff\xfe\xfd\x00"))
		}, "grpcipc wire protocol error", true},
		{"MESSAGE on a stream never opened", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawFrame(1, wire.TypeMessage, 0, []byte("abc")))
		}, "MESSAGE frame on stream 1, which was never opened", true},
		{"truncated frame, then close", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawCall(1), wire.AppendHeader(nil, wire.Header{Length: 100, Stream: 1, Type: wire.TypeMessage}), make([]byte, 10))
			rf.C.CloseWrite()
		}, "unexpected EOF", false},
		{"frame over the limit", func(t *testing.T, rf *e2e.RawFast) {
			// A frame of the limit passes...
			rf.Send(t, e2e.RawCall(1), e2e.RawFrame(1, wire.TypeMessage, 0, make([]byte, wire.DefaultMaxFrame)))
			rf.Alive(t)
			// ...one byte more does not, refused from its header.
			rf.Send(t, wire.AppendHeader(nil, wire.Header{Length: wire.DefaultMaxFrame + 1, Stream: 1, Type: wire.TypeMessage}))
		}, "frame too large", true},
		{"unknown frame type", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawCall(1), e2e.RawFrame(1, 11, 0, nil))
		}, "unknown frame type 11", true},
		{"CALL reusing a stream id", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawCall(3))
			rf.Alive(t)
			rf.Send(t, e2e.RawCall(3))
		}, "CALL on stream 3 after stream 3: streams must increase", true},
		{"CALL with a lower stream id", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawCall(5))
			rf.Alive(t)
			rf.Send(t, e2e.RawCall(4))
		}, "CALL on stream 4 after stream 5: streams must increase", true},
		{"MESSAGE exceeding the window", func(t *testing.T, rf *e2e.RawFast) {
			// Whole messages the handler has not taken (it takes none):
			// the fifth 1 MiB frame is past the 4 MiB window.
			rf.Send(t, e2e.RawCallTo(1, e2e.SinkMethod))
			msg := e2e.RawFrame(1, wire.TypeMessage, 0, make([]byte, 1<<20))
			for range wire.InitialWindow / (1 << 20) {
				rf.Send(t, msg)
			}
			rf.Alive(t)
			rf.Send(t, msg)
		}, "exceed its window", true},
		{"HEADERS from the client", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawCall(1), e2e.RawFrame(1, wire.TypeHeaders, 0, wire.AppendMetadata(nil, nil)))
		}, "a client sent a HEADERS frame, which only servers send", true},
		{"TRAILERS from the client", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawCall(1), e2e.RawFrame(1, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{})))
		}, "a client sent a TRAILERS frame, which only servers send", true},
		{"GOAWAY from the client", func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawFrame(0, wire.TypeGoAway, 0, wire.AppendGoAway(nil, &wire.GoAway{})))
		}, "a client sent a GOAWAY frame, which only servers send", true},
		{"more than 256 streams at once", func(t *testing.T, rf *e2e.RawFast) {
			var calls [][]byte
			for id := uint32(1); id <= 256; id++ {
				calls = append(calls, e2e.RawCall(id))
			}
			rf.Send(t, calls...)
			rf.Alive(t) // 256 are allowed
			rf.Send(t, e2e.RawCall(257))
		}, "more than 256 streams open at once", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := len(log.String())
			g := e2e.KeepCalling(good)
			rf := e2e.DialFast(t, endpoint)
			tc.send(t, rf)
			closed, err := rf.Closed(5 * time.Second)
			g.Check(t)
			if !closed {
				t.Fatalf("the server did not close the connection within 5 s: %v", err)
			}
			got := e2e.LogSince(log, mark, closedLine, tc.log)
			if !strings.Contains(got, closedLine) || !strings.Contains(got, tc.log) {
				t.Errorf("the server's log does not say %q:\n%s", tc.log, got)
			}
			if tc.protocolErr && rf.GoAway == nil {
				noGoAway = append(noGoAway, tc.name)
			}
			t.Logf("closed (%v) after frames %v", err, rf.Frames)
		})
	}

	// Silent peers: one stops inside a frame header, one announces a 1 MiB
	// frame and sends 1,000 bytes of it. Neither is a client waiting for
	// calls (which would send nothing at all between frames): both hold a
	// read mid-frame, and the server should not wait for them for ever.
	t.Run("silent inside a frame", func(t *testing.T) {
		mark := len(log.String())
		g := e2e.KeepCalling(good)
		half := e2e.DialFast(t, endpoint)
		half.Send(t, wire.AppendHeader(nil, wire.Header{Length: 100, Stream: 1, Type: wire.TypeMessage})[:5])
		announced := e2e.DialFast(t, endpoint)
		announced.Send(t, e2e.RawCall(1), wire.AppendHeader(nil, wire.Header{Length: 1 << 20, Stream: 1, Type: wire.TypeMessage}), make([]byte, 1000))
		var wg sync.WaitGroup
		var halfClosed, announcedClosed bool
		wg.Add(2)
		go func() { defer wg.Done(); halfClosed, _ = half.Closed(5 * time.Second) }()
		go func() { defer wg.Done(); announcedClosed, _ = announced.Closed(5 * time.Second) }()
		wg.Wait()
		g.Check(t)
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
		g := e2e.KeepCalling(good)
		before := e2e.HeapInuse()
		var rfs []*e2e.RawFast
		for range peers {
			rf := e2e.DialFast(t, endpoint)
			rf.Send(t, e2e.RawCall(1))
			rf.Alive(t)
			rf.Send(t, wire.AppendHeader(nil, wire.Header{Length: 1 << 20, Stream: 1, Type: wire.TypeMessage}), make([]byte, 100))
			rfs = append(rfs, rf)
		}
		time.Sleep(300 * time.Millisecond) // for the server to read the headers
		after := e2e.HeapInuse()
		runtime.KeepAlive(rfs) // the peers stay connected until measured
		g.Check(t)
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
		g := e2e.KeepCalling(good)
		before := e2e.HeapInuse()
		rf := e2e.DialFast(t, endpoint)
		rf.Send(t, e2e.RawCall(1))
		var granted atomic.Int64
		readErr := make(chan error, 1)
		pong := make(chan struct{}, 1)
		go func() {
			for {
				rf.C.SetReadDeadline(time.Time{})
				h, p, err := rf.R.Next()
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
			parts = append(parts, e2e.RawFrame(1, wire.TypeMessage, wire.FlagMore, make([]byte, min(left, 1<<20))))
		}
		parts = append(parts, e2e.RawFrame(1, wire.TypeMessage, 0, []byte{0}))
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
				rf.Send(t, part)
				used += n
			}
			sent++
		}
		rf.Send(t, e2e.RawFrame(0, wire.TypePing, 0, []byte("alive?!!")))
		select {
		case <-pong:
		case err := <-readErr:
			t.Fatalf("the connection ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no answer to a PING")
		}
		held := e2e.HeapInuse()
		rf.C.Close()
		<-readErr
		g.Check(t)
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
	if got := e2e.SettleTo(goroutines, e2e.GoroutinesBesidesIdleWorkers); got != goroutines {
		t.Errorf("goroutines: %d before the bad peers, %d after", goroutines, got)
	}
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "last"}); err != nil {
		t.Errorf("the well-behaved client after all: %v", err)
	}
}

// TestFastPathNonReaderBounded: a client that sends PINGs (each answered)
// and never reads what the server writes cannot make the server queue
// without bound: once the socket and the writer's queue are full, the
// server stops reading it (its writes wait), and a well-behaved client
// keeps being served meanwhile. (A red-team run before the bound grew a
// server to 4.5 GB this way.)
func TestFastPathNonReaderBounded(t *testing.T) {
	endpoint, _, _, _ := e2e.StartSlowServer(t)
	good := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint))
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	rf := e2e.DialFast(t, endpoint)
	rf.C.SetReadBuffer(4 << 10) // the attacker reads nothing and keeps its buffer small
	before := e2e.HeapInuse()
	// First unary calls, unread replies and all, until a handler's write
	// of its reply blocks: that handler is then the connection's writer,
	// and what others queue waits for it.
	req, _ := proto.Marshal(&greetpb.HelloRequest{Name: strings.Repeat("x", 200)})
	var calls []byte
	id := uint32(1)
	for range 20000 {
		calls = append(calls, e2e.RawCall(id)...)
		calls = append(calls, e2e.RawFrame(id, wire.TypeMessage, 0, req)...)
		calls = append(calls, e2e.RawFrame(id, wire.TypeHalfClose, 0, nil)...)
		id += 2
		if len(calls) > 64<<10 {
			rf.C.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := rf.C.Write(calls); err != nil {
				break
			}
			calls = calls[:0]
			time.Sleep(time.Millisecond)
		}
	}
	ping := e2e.RawFrame(0, wire.TypePing, 0, make([]byte, 8))
	batch := bytes.Repeat(ping, 4096)
	sent := 0
	const most = 96 << 20 // enough answers to fill the socket and the queue many times over
	for sent < most {
		rf.C.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := rf.C.Write(batch)
		sent += n
		if err != nil {
			break // the server stopped reading: what it owes is bounded
		}
	}
	grown := int64(e2e.HeapInuse()) - int64(before)
	t.Logf("sent %d MiB of PINGs without reading; the server's heap grew by %d MiB", sent>>20, grown>>20)
	if sent >= most {
		t.Errorf("the server read %d MiB of PINGs from a client that reads nothing: no back-pressure", sent>>20)
	}
	if grown > 48<<20 {
		t.Errorf("the server's heap grew by %d MiB for one client that does not read", grown>>20)
	}
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{}); err != nil {
		t.Errorf("a well-behaved client during the flood: %v", err)
	}
	rf.C.Close()
}

// A unary call takes one request: a second ends the call with grpc-go's
// cardinality violation, and the connection goes on.
func TestFastPathUnaryTakesOneRequest(t *testing.T) {
	endpoint, _, _, _ := e2e.StartSlowServer(t)
	rf := e2e.DialFast(t, endpoint)
	req, _ := proto.Marshal(&greetpb.HelloRequest{Name: "once"})
	rf.Send(t, e2e.RawCall(1), e2e.RawFrame(1, wire.TypeMessage, 0, req), e2e.RawFrame(1, wire.TypeMessage, 0, req), e2e.RawFrame(1, wire.TypeHalfClose, 0, nil))
	for {
		h, p, err := rf.Next(3 * time.Second)
		if err != nil {
			t.Fatalf("no TRAILERS: %v (frames %v)", err, rf.Frames)
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
	rf.Alive(t)
}
