package grpcipc_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
)

func init() {
	// budget-rounds ENDPOINT ROUNDS: hold one idle connection; on ROUNDS new
	// connections in turn, make the reader wait for budget room on a
	// stream whose deadline passes meanwhile (the charge leaks), then
	// close that connection. Print "done", hold the first until stdin closes.
	grpcipc.RegisterHelper("budget-rounds", func(args []string) error {
		if len(args) != 2 {
			return errors.New("want ENDPOINT ROUNDS")
		}
		rounds, _ := strconv.Atoi(args[1])
		addr, err := unixAddr(args[0])
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
			bw.Write(rawFrame(1, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: sinkMethod, Timeout: 2 * time.Second})))
			for range 3 {
				msg(1, 0, 1<<20)
			}
			left := 242
			for s := uint32(3); left > 0; s += 2 {
				bw.Write(rawCallTo(s, sinkMethod))
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
	p := mustPolicy(t, `{"name": "sink-for-nobody",
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
	conns, callers := grpcipc.BudgetsInUse(s)
	t.Logf("after 4 rounds, with only the idle connection left: connections %v, caller budgets %v", conns, callers)
	stdin.Close()
	cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	_, after := grpcipc.BudgetsInUse(s)
	t.Logf("after the caller left: %v", after)
	if callers["uid:65534"] > 0 {
		t.Errorf("the caller's budget holds %d bytes that no connection or stream holds", callers["uid:65534"])
	}
	if len(after) > 0 {
		t.Errorf("after the caller left, caller budgets %v remain", after)
	}
}
