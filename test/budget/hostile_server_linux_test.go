package budget

// The memory budget of a client against a hostile server in another
// user's process (docs/protocol.md, "Memory budgets"): whatever frames the
// server sends on the calls the client opened, the client's heap stays
// within its budget and a fixed overhead.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

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
			put(e2e.RawFrame(s, wire.TypeHeaders, 0, p))
		}
	case "bigheaders": // 15 MiB of headers in parts on every stream
		p := wire.AppendMetadata(nil, []wire.KV{{Key: "v", Value: strings.Repeat("v", 15<<20)}})
		for _, s := range streams {
			put(e2e.PartsOf(s, wire.TypeHeaders, p))
		}
	case "headerparts": // 16 MiB of headers in parts, never finished
		p := wire.AppendMetadata(nil, []wire.KV{{Key: "v", Value: string(make16MiB())}})
		b := e2e.PartsOf(streams[0], wire.TypeHeaders, p)
		put(b[:len(b)-(wire.HeaderSize+1<<20)])
	case "bigtrailers": // 15 MiB of trailers in parts, ending every stream
		p := wire.AppendTrailer(nil, &wire.Trailer{Code: uint32(codes.Aborted), Metadata: []wire.KV{{Key: "v", Value: strings.Repeat("v", 15<<20)}}})
		for _, s := range streams {
			put(e2e.PartsOf(s, wire.TypeTrailers, p))
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
	testutil.RegisterHelper("hostile-server", func(args []string) error {
		if len(args) != 2 {
			return errors.New("want ENDPOINT MODE")
		}
		if err := flood(args[1], io.Discard, []uint32{1}); err != nil {
			return err
		}
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
			w := e2e.WatchHeap()
			// A client that trusts any server, with calls whose replies it
			// does not read yet.
			conn := e2e.NewClient(t, endpoint, grpcipc.WithExpectedServer(grpcipc.Anyone()))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var streams []grpc.ClientStream
			for range hostileStreams {
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
