package fastpath

// GracefulStop on the fast path (docs/protocol.md, "Shutdown"): its GOAWAY
// names the last stream started, the streams up to it finish, and none
// after it runs.

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testhooks"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// Held: a graceful stop while a CALL is in parts. The GOAWAY names the
// last stream started; the CALL finished after it is not started (no
// TRAILERS: the client retries it elsewhere), and the connection closes
// once the calls started end, whether the CALL in parts finished or not.
func TestGracefulStopWhileACallIsInParts(t *testing.T) {
	for _, finish := range []bool{true, false} {
		t.Run(fmt.Sprintf("finished=%v", finish), func(t *testing.T) {
			endpoint, s, _, _ := e2e.StartSlowServer(t) // it serves the Sink too
			rf := e2e.DialFast(t, endpoint)
			call := wire.AppendCall(nil, &wire.Call{Method: e2e.SinkMethod, Metadata: []wire.KV{{Key: "v", Value: strings.Repeat("v", 4<<20)}}})
			parts := e2e.PartsOf(3, wire.TypeCall, call)
			var frames [][]byte
			for p := parts; len(p) > 0; {
				h, _ := wire.ParseHeader(p[:wire.HeaderSize])
				n := wire.HeaderSize + int(h.Length)
				frames = append(frames, p[:n])
				p = p[n:]
			}
			rf.Send(t, e2e.RawCallTo(1, e2e.SinkMethod))
			rf.Send(t, frames[:len(frames)-1]...)
			// The server reads the parts as fast as the machine lets it.
			var conns []int64
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if conns, _ = testhooks.BudgetsInUse(s); len(conns) == 1 && conns[0] >= 4<<20 {
					break
				}
			}
			if len(conns) != 1 || conns[0] < 4<<20 {
				t.Fatalf("with 4 MiB of a CALL in parts, the connections' budgets: %v", conns)
			}
			stopped := make(chan struct{})
			go func() { s.GracefulStop(); close(stopped) }()
			for rf.GoAway == nil {
				if _, _, err := rf.Next(3 * time.Second); err != nil {
					t.Fatalf("no GOAWAY: %v", err)
				}
			}
			if rf.GoAway.LastStream != 1 {
				t.Errorf("GOAWAY after stream %d, want 1", rf.GoAway.LastStream)
			}
			if finish {
				rf.Send(t, frames[len(frames)-1])
			}
			rf.Send(t, e2e.RawFrame(1, wire.TypeCancel, 0, nil))
			closed, err := rf.Closed(3 * time.Second)
			if !closed {
				t.Fatalf("the connection was not closed once its one started call ended: %v (frames %v)", err, rf.Frames)
			}
			select {
			case <-stopped:
			case <-time.After(3 * time.Second):
				t.Fatal("GracefulStop did not return")
			}
			t.Logf("frames from the server: %v", rf.Frames)
		})
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
	rf := e2e.DialFast(t, env.endpoint)
	defer rf.C.Close()
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
			b = append(b[:0], e2e.RawFrame(id, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: "/grpc.testing.TestService/EmptyCall"}))...)
			b = append(b, e2e.RawFrame(id, wire.TypeMessage, 0, nil)...)
			b = append(b, e2e.RawFrame(id, wire.TypeHalfClose, 0, nil)...)
			rf.C.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := rf.C.Write(b); err != nil {
				return
			}
			sent.Store(int64(id))
		}
	}()
	trailers := map[uint32]bool{}
	stopped := make(chan struct{})
	var res goAwayResult
	for {
		h, _, err := rf.Next(10 * time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				res.err = fmt.Sprintf("the server neither finished nor closed the connection within 10 s (GOAWAY seen: %v)", rf.GoAway != nil)
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
	res.goAway, res.finished = rf.GoAway, len(trailers)
	if rf.GoAway == nil {
		return res
	}
	last := rf.GoAway.LastStream
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
