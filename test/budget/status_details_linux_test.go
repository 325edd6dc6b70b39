package budget

// Red team, fast path version 2 (the HTTP/2 offer, payloads in parts): a
// hostile server's status details. The round's other findings are tested
// by subject: TestHeaderChargeReturnedWhenNotStarted (release_linux_test.go),
// TestCallerBudgetReleasedWhenACallInPartsDies (caller_release_linux_test.go),
// test/admission's flood_linux_test.go and test/fastpath's
// odd_servers_linux_test.go and goaway_linux_test.go.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testhooks"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// detailsTrailer is a TRAILERS payload whose status details are a
// google.rpc.Status of n empty Any messages: 2 bytes each on the wire, and
// an *anypb.Any (about 90 bytes of heap) each once parsed, twice while
// status.FromProto clones it.
func detailsTrailer(n int) []byte {
	s := &spb.Status{Code: int32(codes.Aborted), Message: "details"}
	s.Details = make([]*anypb.Any, n)
	for i := range s.Details {
		s.Details[i] = &anypb.Any{}
	}
	d, err := proto.Marshal(s)
	if err != nil {
		panic(err)
	}
	return wire.AppendTrailer(nil, &wire.Trailer{Code: uint32(codes.Aborted), Message: "details", Details: d})
}

// detailsStreams is how many calls the client opens to the hostile server
// of TestStatusDetailsChargedAtWhatTheyHold.
const detailsStreams = 4

func init() {
	// hostile-details ENDPOINT ANYS: serve one fast-path connection; once
	// the client has opened detailsStreams calls, end each with TRAILERS (in
	// parts) whose status details hold ANYS empty Any messages; print "sent
	// N" and hold the connection until standard input closes.
	testutil.RegisterHelper("hostile-details", func(args []string) error {
		if len(args) != 2 {
			return errors.New("want ENDPOINT ANYS")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		p := detailsTrailer(n)
		addr, err := e2e.UnixAddr(args[0])
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
			if streams = append(streams, id); len(streams) == detailsStreams {
				break
			}
		}
		var sent atomic.Int64
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		w := bufio.NewWriterSize(countingWriter{c, &sent}, 256<<10)
		for _, s := range streams {
			w.Write(e2e.PartsOf(s, wire.TypeTrailers, p))
		}
		w.Flush()
		fmt.Println("sent", sent.Load())
		io.Copy(io.Discard, os.Stdin)
		return nil
	})
}

// Finding: status details were charged at their bytes (twice), but a
// client parses them into a google.rpc.Status, and an empty Any takes 2
// bytes on the wire and about 90 bytes of heap (twice while
// status.FromProto clones it). A hostile server's 2 MiB of details held
// about 100 MiB of the client's heap for a 4 MiB charge: 4 calls the
// application had not yet read grew the client by 400 MiB (budget 64 MiB).
func TestStatusDetailsChargedAtWhatTheyHold(t *testing.T) {
	testutil.RequireRoot(t)
	for _, anys := range []int{1 << 20, 64 << 10} { // 2 MiB and 128 KiB of details
		t.Run(strconv.Itoa(anys), func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "hostile-details", endpoint, strconv.Itoa(anys))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out := testutil.Start(t, cmd)
			if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
				t.Fatalf("the hostile server: %q, %v", line, err)
			}
			w := e2e.WatchHeap()
			conn := e2e.NewClient(t, endpoint, grpcipc.WithExpectedServer(grpcipc.Anyone()))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var streams []grpc.ClientStream
			for range detailsStreams {
				s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, e2e.SinkMethod)
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
			grown := w.Grown()
			seen := map[codes.Code]int{}
			var last error
			for _, s := range streams {
				last = s.RecvMsg(&emptypb.Empty{})
				seen[status.Code(last)]++
			}
			if anys == 1<<20 && !strings.Contains(status.Convert(last).Message(), "more than this client's memory budget") {
				t.Errorf("details that cannot fit the budget: %v; want the message to say so", last)
			}
			cancel()
			stdin.Close()
			cmd.Wait()
			t.Logf("a hostile server %s (%d calls, status details of %d empty Any each): the client's heap grew by %.1f MiB at most (budget %d MiB); the calls ended %v",
				strings.TrimSpace(line), detailsStreams, anys, float64(grown)/MiB, grpcipc.DefaultConnMemoryBudget/MiB, seen)
			if limit := int64(grpcipc.DefaultConnMemoryBudget + budgetOverhead); grown > limit {
				t.Errorf("the client's heap grew by %.1f MiB; the budget allows %.1f MiB", float64(grown)/MiB, float64(limit)/MiB)
			}
			if seen[codes.Aborted]+seen[codes.ResourceExhausted] != detailsStreams {
				t.Errorf("the calls ended %v; want each Aborted (its details fit) or ResourceExhausted (they do not)", seen)
			}
			if anys < 1<<20 && seen[codes.Aborted] == 0 {
				t.Errorf("the calls ended %v; want some Aborted, with details that fit the budget", seen)
			}
			if u := testhooks.ClientBudgetUsed(conn); u != 0 {
				t.Errorf("after the calls ended, the client's budget holds %d bytes", u)
			}
		})
	}
}
