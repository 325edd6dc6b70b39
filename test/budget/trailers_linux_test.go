package budget

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
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// floodThenTrailers: a hostile server fills each stream up to what the client's
// budget and window let it queue, then ends the stream with TRAILERS OK:
// what the application has not taken stays charged, so the next streams
// cannot add to it (a red-team run grew a client by 513 MiB when ended
// streams gave their charges back).
func floodThenTrailers(mode string, w io.Writer, streams []uint32) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var err error
	put := func(b []byte) {
		if err == nil {
			_, err = bw.Write(b)
		}
	}
	msg := func(stream uint32, n int) {
		put(wire.AppendHeader(nil, wire.Header{Length: uint32(n), Stream: stream, Type: wire.TypeMessage}))
		put(zeros[:n])
	}
	ok := wire.AppendTrailer(nil, &wire.Trailer{})
	for _, s := range streams {
		switch mode {
		case "trailers-windows":
			for range wire.InitialWindow / (1 << 20) {
				msg(s, 1<<20)
			}
		case "trailers-empty":
			for range 65536 {
				msg(s, 0)
			}
		default:
			return fmt.Errorf("no flood %q", mode)
		}
		put(e2e.RawFrame(s, wire.TypeTrailers, 0, ok))
	}
	if err == nil {
		err = bw.Flush()
	}
	return err
}

func init() {
	// trailers-server ENDPOINT MODE STREAMS
	testutil.RegisterHelper("trailers-server", func(args []string) error {
		if len(args) != 3 {
			return errors.New("want ENDPOINT MODE STREAMS")
		}
		n, _ := strconv.Atoi(args[2])
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
			if streams = append(streams, id); len(streams) == n {
				break
			}
		}
		var sent atomicCounter
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		err = floodThenTrailers(args[1], countingWriter{c, &sent.Int64}, streams)
		fmt.Println("sent", sent.Load(), err)
		io.Copy(io.Discard, os.Stdin)
		return nil
	})
}

func TestBudgetHeldAfterTrailers(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		mode    string
		streams int
	}{{"trailers-windows", 32}} {
		t.Run(fmt.Sprintf("%s-%d", tc.mode, tc.streams), func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "trailers-server", endpoint, tc.mode, strconv.Itoa(tc.streams))
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
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var streams []grpc.ClientStream
			for range tc.streams {
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
			time.Sleep(1500 * time.Millisecond)
			grown := w.Grown()
			// What the application receives afterwards.
			got, codesSeen := 0, map[codes.Code]int{}
			for _, s := range streams {
				for {
					err := s.RecvMsg(&emptypb.Empty{})
					if err != nil {
						codesSeen[status.Code(err)]++
						break
					}
					got++
				}
			}
			cancel()
			stdin.Close()
			cmd.Wait()
			t.Logf("%s, %d streams: server %s; the client's heap grew by %.1f MiB (budget %d MiB); the application then received %d messages, ends %v",
				tc.mode, tc.streams, strings.TrimSpace(line), float64(grown)/MiB, grpcipc.DefaultConnMemoryBudget/MiB, got, codesSeen)
			if limit := int64(grpcipc.DefaultConnMemoryBudget + budgetOverhead); grown > limit {
				t.Errorf("the client's heap grew by %.1f MiB; the budget allows %.1f MiB", float64(grown)/MiB, float64(limit)/MiB)
			}
		})
	}
}

type atomicCounter struct{ atomic.Int64 }
