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
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testhooks"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

func init() {
	// budget-rounds ENDPOINT ROUNDS: hold one idle connection; on ROUNDS new
	// connections in turn, make the reader wait for budget room on a
	// stream whose deadline passes meanwhile (the charge leaks), then
	// close that connection. Print "done", hold the first until stdin closes.
	testutil.RegisterHelper("budget-rounds", func(args []string) error {
		if len(args) != 2 {
			return errors.New("want ENDPOINT ROUNDS")
		}
		rounds, _ := strconv.Atoi(args[1])
		addr, err := e2e.UnixAddr(args[0])
		if err != nil {
			return err
		}
		dial := func() (net.Conn, error) {
			c, err := net.Dial("unix", addr)
			if err != nil {
				return nil, err
			}
			if _, err := c.Write(wire.AppendPreface(nil, wire.Version)); err != nil {
				return nil, err
			}
			go io.Copy(io.Discard, c)
			return c, nil
		}
		c0, err := dial()
		if err != nil {
			return err
		}
		defer c0.Close()
		for range rounds {
			c, err := dial()
			if err != nil {
				return err
			}
			t0 := time.Now()
			bw := bufio.NewWriterSize(c, 1<<20)
			msg := func(s uint32, fl wire.Flags, n int) {
				bw.Write(wire.AppendHeader(nil, wire.Header{Length: uint32(n), Stream: s, Type: wire.TypeMessage, Flags: fl}))
				bw.Write(zeros[:n])
			}
			bw.Write(e2e.RawFrame(1, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: e2e.SinkMethod, Timeout: 2 * time.Second})))
			for range 3 {
				msg(1, 0, 1<<20)
			}
			left := 242
			for s := uint32(3); left > 0; s += 2 {
				bw.Write(e2e.RawCallTo(s, e2e.SinkMethod))
				for i := 0; i < 16 && left > 0; i++ {
					msg(s, 0, 256<<10)
					left--
				}
			}
			bw.Flush()
			time.Sleep(time.Until(t0.Add(1600 * time.Millisecond)))
			msg(1, wire.FlagMore, 1<<20)
			bw.Flush()
			time.Sleep(1500 * time.Millisecond)
			c.Close()
			time.Sleep(200 * time.Millisecond)
		}
		fmt.Println("done")
		io.Copy(io.Discard, os.Stdin)
		return nil
	})
}

// A caller that keeps one connection open and runs rounds of the
// handler-ends-while-waiting attack on fresh connections leaves nothing
// charged to its budget (a red-team run leaked 9 MiB in 4 rounds: the
// 256 MiB budget would have been full, for every process of that uid, in
// minutes), and its budget goes when it leaves.
func TestCallerBudgetReleasedAcrossReconnects(t *testing.T) {
	testutil.RequireRoot(t)
	p := e2e.MustPolicy(t, `{"name": "sink-for-nobody",
		"allow_rules": [{"name": "sink", "source": {"principals": ["uid:65534"]}, "request": {"paths": ["/grpcipc.test.Sink/*"]}},
		                {"name": "self", "source": {"principals": ["same-user"]}}]}`)
	endpoint, s := serveBig(t, grpcipc.WithPolicy(p))
	cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "budget-rounds", endpoint, "4")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := testutil.Start(t, cmd)
	if line, err := out.ReadString('\n'); err != nil || line != "done\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	time.Sleep(300 * time.Millisecond)
	conns, callers := testhooks.BudgetsInUse(s)
	t.Logf("after 4 rounds, with only the idle connection left: connections %v, caller budgets %v", conns, callers)
	stdin.Close()
	cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	_, after := testhooks.BudgetsInUse(s)
	t.Logf("after the caller left: %v", after)
	if callers["uid:65534"] > 0 {
		t.Errorf("the caller's budget holds %d bytes that no connection or stream holds", callers["uid:65534"])
	}
	if len(after) > 0 {
		t.Errorf("after the caller left, caller budgets %v remain", after)
	}
}

// offerConn dials addr and offers the fast path (version 2's offer), and
// reads the server's preface; the server's later frames are discarded.
func offerConn(addr string) (net.Conn, error) {
	c, err := net.Dial("unix", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(wire.AppendOffer(nil, wire.Version)); err != nil {
		c.Close()
		return nil, err
	}
	var pre [wire.PrefaceSize]byte
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, pre[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("the server's preface: %w", err)
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}

// blockRounds are the ways a connection ends with a CALL in parts
// unfinished: each sends 8 MiB of a CALL's parts, then what it says.
var blockRounds = []string{"close", "ping", "cancel", "lower-stream", "over-limit", "other-stream"}

func init() {
	// block-rounds ENDPOINT: keep one connection open and idle; on fresh
	// connections, one after the other, send a CALL in parts and end the
	// connection in each of blockRounds' ways; print "done" and hold the
	// idle connection until standard input closes.
	testutil.RegisterHelper("block-rounds", func(args []string) error {
		addr, err := e2e.UnixAddr(args[0])
		if err != nil {
			return err
		}
		idle, err := offerConn(addr)
		if err != nil {
			return err
		}
		defer idle.Close()
		go io.Copy(io.Discard, idle)
		call := wire.AppendCall(nil, &wire.Call{Method: e2e.SinkMethod, Metadata: []wire.KV{{Key: "v", Value: strings.Repeat("v", 12<<20)}}})
		parts := func(stream uint32, n int) []byte { // n MiB of the CALL's parts, all with MORE
			var out []byte
			for i := range n {
				out = append(out, e2e.RawFrame(stream, wire.TypeCall, wire.FlagMore, call[i<<20:(i+1)<<20])...)
			}
			return out
		}
		for _, round := range blockRounds {
			c, err := offerConn(addr)
			if err != nil {
				return err
			}
			var out []byte
			switch round {
			case "close":
				out = parts(1, 8)
			case "ping":
				out = append(parts(1, 8), e2e.RawFrame(0, wire.TypePing, 0, []byte("12345678"))...)
			case "cancel":
				out = append(parts(1, 8), e2e.RawFrame(1, wire.TypeCancel, 0, nil)...)
			case "lower-stream": // a whole CALL on 5, then one in parts on 3
				out = append(e2e.RawCallTo(5, e2e.SinkMethod), parts(3, 8)...)
				out = append(out, e2e.PartsOf(3, wire.TypeCall, call[8<<20:])...)
			case "over-limit": // 17 MiB of parts: 16 MiB kept, the rest skipped
				big := make([]byte, 1<<20)
				out = parts(1, 8)
				for range 9 {
					out = append(out, e2e.RawFrame(1, wire.TypeCall, wire.FlagMore, big)...)
				}
			case "other-stream": // a CALL on another stream between the parts
				out = append(parts(1, 8), e2e.RawCallTo(3, e2e.SinkMethod)...)
			}
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(out); err != nil {
				return fmt.Errorf("%s: %w", round, err)
			}
			if round == "close" || round == "over-limit" {
				// Closed by this side once the server has read it all: a PING
				// between parts would be an error, so wait a moment instead.
				time.Sleep(300 * time.Millisecond)
				c.Close()
				continue
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, c) // until the server closes it
			c.Close()
			if err != nil {
				return fmt.Errorf("%s: the server did not close the connection: %w", round, err)
			}
		}
		fmt.Println("done")
		io.Copy(io.Discard, os.Stdin)
		return nil
	})
}

// Held: a connection that ends, however, with a CALL in parts unfinished
// gives back to its caller's budget what the parts held.
func TestCallerBudgetReleasedWhenACallInPartsDies(t *testing.T) {
	testutil.RequireRoot(t)
	p := e2e.MustPolicy(t, `{"name": "sink-for-nobody",
		"allow_rules": [{"name": "sink", "source": {"principals": ["uid:65534"]}, "request": {"paths": ["/grpcipc.test.Sink/*"]}},
		                {"name": "self", "source": {"principals": ["same-user"]}}]}`)
	endpoint, s := serveBig(t, grpcipc.WithPolicy(p))
	cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "block-rounds", endpoint)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := testutil.Start(t, cmd)
	if line, err := out.ReadString('\n'); err != nil || line != "done\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	var conns []int64
	var callers map[string]int64
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		conns, callers = testhooks.BudgetsInUse(s)
		if callers["uid:65534"] == 0 && len(conns) == 1 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("after %d connections ended with a CALL in parts (%v), the idle one left: connections %v, caller budgets %v", len(blockRounds), blockRounds, conns, callers)
	stdin.Close()
	cmd.Wait()
	if callers["uid:65534"] != 0 || len(conns) != 1 || conns[0] != 0 {
		t.Errorf("the caller's budget holds %d bytes; connections' %v (want one, at 0)", callers["uid:65534"], conns)
	}
}
