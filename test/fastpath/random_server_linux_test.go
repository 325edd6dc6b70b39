package fastpath

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Attack: a server that answers each call with a random script (header or
// not; the reply whole or in parts of random sizes; PINGs, WINDOWs and
// frames of ended calls between; trailers in parts; sometimes no answer at
// all), its bytes cut at random points with pauses between; callers that
// come and go with deadlines of a few milliseconds, streams among them.
// The server reads everything (no write of the client's can block). Every
// call ends by its deadline and some slack, with OK or its deadline's code
// (or the server's INTERNAL for a script that breaks cardinality), and
// nothing is left behind.
func TestRandomServerScripts(t *testing.T) {
	for _, callers := range []int{1, 3} {
		t.Run(fmt.Sprint(callers, " callers"), func(t *testing.T) { attackRandomServer(t, callers) })
	}
}

func attackRandomServer(t *testing.T, callers int) {
	fpNoLeaks(t)
	var seed atomic.Uint64
	seed.Store(uint64(time.Now().UnixNano()))
	endpoint := atkServe(t, func(c *atkConn) {
		r := rand.New(rand.NewPCG(seed.Add(1), 99))
		out := make(chan []byte, 1024)
		var wg sync.WaitGroup
		wg.Add(1)
		wr := rand.New(rand.NewPCG(seed.Add(1), 98))
		go func() { // the writer: the bytes cut at random points, pauses between
			defer wg.Done()
			r := wr
			for b := range out {
				for len(b) > 0 {
					n := 1 + r.IntN(len(b))
					if r.IntN(3) > 0 {
						n = len(b)
					}
					if c.Write(b[:n]) != nil {
						for range out {
						}
						return
					}
					b = b[n:]
					if len(b) > 0 && r.IntN(2) == 0 {
						time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
					}
				}
			}
		}()
		defer func() { close(out); wg.Wait() }()
		var ended []uint32
		for {
			h, _, err := c.R.Next()
			if err != nil {
				return
			}
			if h.Type != wire.TypeHalfClose {
				continue
			}
			id := h.Stream
			var b []byte
			frame := func(typ wire.Type, fl wire.Flags, p []byte) {
				b = append(b, e2e.RawFrame(id, typ, fl, p)...)
			}
			noise := func() {
				switch r.IntN(6) {
				case 0:
					b = append(b, e2e.RawFrame(0, wire.TypePing, 0, []byte("12345678"))...)
				case 1:
					if len(ended) > 0 {
						b = append(b, e2e.RawFrame(ended[r.IntN(len(ended))], wire.TypeMessage, 0, []byte{1, 2, 3})...)
					}
				case 2:
					b = append(b, e2e.RawFrame(id, wire.TypeWindow, 0, wire.AppendWindow(nil, 100))...)
				}
			}
			if r.IntN(15) == 0 {
				ended = append(ended, id)
				continue // no answer: the call ends with its deadline
			}
			noise()
			if r.IntN(2) == 0 {
				md := wire.AppendMetadata(nil, []wire.KV{{Key: "k", Value: strings.Repeat("v", r.IntN(100))}})
				frame(wire.TypeHeaders, 0, md)
				noise()
			}
			msg, _ := proto.Marshal(wrapperspb.Bytes(make([]byte, r.IntN(200<<10))))
			for len(msg) > 0 {
				n := len(msg)
				if r.IntN(2) == 0 {
					n = 1 + r.IntN(len(msg))
				}
				fl := wire.FlagMore
				if n == len(msg) {
					fl = 0
				}
				frame(wire.TypeMessage, fl, msg[:n])
				msg = msg[n:]
				if r.IntN(4) == 0 {
					noise()
				}
			}
			tr := wire.AppendTrailer(nil, &wire.Trailer{Metadata: []wire.KV{{Key: "t", Value: strings.Repeat("t", r.IntN(600))}}})
			if r.IntN(3) == 0 && len(tr) > 2 {
				cut := 1 + r.IntN(len(tr)-1)
				frame(wire.TypeTrailers, wire.FlagMore, tr[:cut])
				frame(wire.TypeTrailers, 0, tr[cut:])
			} else {
				frame(wire.TypeTrailers, 0, tr)
			}
			if r.IntN(3) == 0 {
				noise()
			}
			ended = append(ended, id)
			out <- b
		}
	})
	conn := atkClient(t, endpoint)
	if _, err := atkInvoke(conn, 5*time.Second); err != nil {
		t.Logf("first call: %v", err)
	}
	until := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	var calls, oks atomic.Int64
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), seed.Load()))
			for time.Now().Before(until) {
				d := time.Duration(1+r.IntN(30)) * time.Millisecond
				ctx, cancel := context.WithTimeout(context.Background(), d)
				start := time.Now()
				var err error
				if g == callers-1 && r.IntN(5) == 0 {
					var s grpc.ClientStream
					s, err = conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, atkUnary)
					if err == nil {
						if err = s.SendMsg(wrapperspb.String("q")); err == nil {
							s.CloseSend()
							for err == nil {
								err = s.RecvMsg(new(wrapperspb.BytesValue))
							}
							if err == io.EOF {
								err = nil
							}
						}
					}
				} else {
					err = conn.Invoke(ctx, atkUnary, wrapperspb.String("q"), new(wrapperspb.BytesValue))
				}
				took := time.Since(start)
				cancel()
				calls.Add(1)
				if err == nil {
					oks.Add(1)
				}
				if took > d+300*time.Millisecond {
					select {
					case errs <- fmt.Errorf("a call with a %v deadline took %v: %v", d, took, err):
					default:
					}
				}
				switch status.Code(err) {
				case codes.OK, codes.DeadlineExceeded:
				case codes.Internal: // "cardinality violation" (pre-existing race) and such
				default:
					if err != io.EOF {
						select {
						case errs <- fmt.Errorf("a call: %v", err):
						default:
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d calls, %d OK", calls.Load(), oks.Load())
}
