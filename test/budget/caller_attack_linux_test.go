package budget

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

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// The memory budgets of the fast path (docs/protocol.md, "Memory budgets")
// attacked from another user's process: whatever frames an admitted caller
// sends, the server's heap stays within the budget and a fixed overhead,
// and the server's own user is served meanwhile. (The same from a hostile
// server to a client: hostile_server_linux_test.go.)

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
		put(e2e.RawCallTo(1, e2e.SinkMethod))
		for range 300_000 {
			msg(1, 0, 1)
		}
	case "unary": // one-byte messages on a unary call, never half-closed
		put(e2e.RawCallTo(1, e2e.SayHelloMethod))
		for range 300_000 {
			msg(1, 0, 1)
		}
	case "empty": // empty messages, which use no window
		put(e2e.RawCallTo(1, e2e.SinkMethod))
		for range 1_000_000 {
			msg(1, 0, 0)
		}
	case "windows": // full windows of whole messages on 64 streams
		for s := uint32(1); s <= 127; s += 2 {
			put(e2e.RawCallTo(s, e2e.SinkMethod))
			for range wire.InitialWindow / (1 << 20) {
				msg(s, 0, 1<<20)
			}
		}
	case "parts": // an unfinished message of the size limit on 256 streams
		for s := uint32(1); s <= 511; s += 2 {
			put(e2e.RawCallTo(s, e2e.SinkMethod))
			for range 4 {
				msg(s, wire.FlagMore, 1<<20)
			}
		}
	case "dead": // big frames to a stream that ended, between messages to live ones
		put(e2e.RawCallTo(1, e2e.SayHelloMethod))
		put(e2e.RawFrame(1, wire.TypeMessage, 0, nil))
		put(e2e.RawFrame(1, wire.TypeHalfClose, 0, nil))
		for s := uint32(3); s <= 9; s += 2 {
			put(e2e.RawCallTo(s, e2e.SinkMethod))
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
			put(e2e.RawCallTo(s, e2e.SinkMethod, md...))
		}
	case "callparts": // a CALL in parts of 16 MiB of metadata, never finished
		parts := e2e.CallParts(1, &wire.Call{Method: e2e.SinkMethod, Metadata: []wire.KV{{Key: "v", Value: string(make16MiB())}}})
		put(parts[:len(parts)-(wire.HeaderSize+1<<20)]) // all but the last 1 MiB part or so
	case "bigcalls": // calls with 15 MiB of metadata each, in parts
		md := []wire.KV{{Key: "v", Value: strings.Repeat("v", 15<<20)}}
		for s := uint32(1); s <= 15; s += 2 {
			put(e2e.CallParts(s, &wire.Call{Method: e2e.SinkMethod, Metadata: md}))
		}
	case "entries": // calls with 400,000 empty entries each (1.2 MB on the wire)
		md := make([]wire.KV, 400_000)
		for i := range md {
			md[i] = wire.KV{Key: "k"}
		}
		for s := uint32(1); s <= 15; s += 2 {
			put(e2e.CallParts(s, &wire.Call{Method: e2e.SinkMethod, Metadata: md}))
		}
	default:
		return fmt.Errorf("no attack %q", mode)
	}
	if err == nil {
		err = bw.Flush()
	}
	return err
}

func init() {
	// budget-attack ENDPOINT MODE CONNS NEED: make CONNS fast-path
	// connections, send each MODE's frames (as many as the server reads
	// within 4 s; and on, up to 30 s, while less than NEED bytes in all
	// were sent and the server still reads: a loaded machine's server
	// reads slowly, and an attack that is to fill a budget must send more
	// than it), print "sent N" (bytes, all connections), then hold the
	// connections until standard input closes.
	testutil.RegisterHelper("budget-attack", func(args []string) error {
		if len(args) != 4 {
			return errors.New("want ENDPOINT MODE CONNS NEED")
		}
		addr, err := e2e.UnixAddr(args[0])
		if err != nil {
			return err
		}
		var size atomic.Int64
		if err := attack(args[1], countingWriter{io.Discard, &size}); err != nil {
			return err
		}
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		need, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil {
			return err
		}
		need = min(need, int64(n)*size.Load())
		var sent atomic.Int64
		var wg sync.WaitGroup
		conns := make([]net.Conn, n)
		start := time.Now()
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
				attack(args[1], attackWriter{c, &sent, start, need})
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

// attackWriter writes an attack to a connection, counting what it sent in
// all: for 4 s after start, then, while less than need was sent in all,
// for as long as each write goes through within 2 s, up to 30 s.
type attackWriter struct {
	c     net.Conn
	sent  *atomic.Int64
	start time.Time
	need  int64
}

func (w attackWriter) Write(b []byte) (int, error) {
	end := w.start.Add(4 * time.Second)
	if w.sent.Load() < w.need {
		// Still short: on while the server reads.
		if next := time.Now().Add(2 * time.Second); next.After(end) {
			end = next
		}
		if hard := w.start.Add(30 * time.Second); end.After(hard) {
			end = hard
		}
	}
	w.c.SetWriteDeadline(end)
	n, err := w.c.Write(b)
	w.sent.Add(int64(n))
	return n, err
}

func TestMemoryBudgetsHoldAgainstACaller(t *testing.T) {
	testutil.RequireRoot(t)
	p := e2e.MustPolicy(t, `{"name": "sink-for-nobody",
		"allow_rules": [{"name": "sink", "source": {"principals": ["uid:65534"]}, "request": {"paths": ["/grpcipc.test.Sink/*", "/greet.Greeter/SayHello"]}},
		                {"name": "self", "source": {"principals": ["same-user"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	gs := e2e.ServeGuardedKind(t, e2e.SinkServerKind, endpoint, nil, grpcipc.WithPolicy(p))
	good := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint))
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "first"}); err != nil {
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
			mark := len(gs.Log.String())
			g := e2e.KeepCalling(good)
			w := e2e.WatchHeap()
			// bigcalls fills the budget with what it sends, not with what
			// that costs the server: it must send more than the budget,
			// however slowly a loaded machine's server reads (in 4 s a
			// race-detector build beside other tests read 35 MB of it).
			var need int64
			if tc.mode == "bigcalls" {
				need = tc.budget + 16<<20
			}
			cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "budget-attack", endpoint, tc.mode, strconv.Itoa(tc.conns), strconv.FormatInt(need, 10))
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
			grown := w.Grown()
			stdin.Close()
			cmd.Wait()
			g.Check(t)
			var want []string
			if tc.full {
				want = append(want, "memory budget is full")
			}
			log := e2e.LogSince(gs.Log, mark, want...)
			t.Logf("uid 65534 %s (%d connections): the server's heap grew by %.1f MiB at most (budget %d MiB); %d calls of the server's own user served meanwhile",
				strings.TrimSpace(line), tc.conns, float64(grown)/MiB, tc.budget/MiB, g.OK.Load())
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
