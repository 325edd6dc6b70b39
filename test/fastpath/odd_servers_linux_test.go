package fastpath

// A client against servers that answer its offer of the fast path late,
// oddly or never (found by the red team of fast path version 2): its calls
// end with their contexts, and Close leaves nothing behind.

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Finding: a client waited for the server's answer to its offer (up to
// 20 s without a deadline) without watching its dialling call's context:
// a call cancelled meanwhile, against a server that accepts and answers
// nothing (hung, stopped), returned only after 20 s, where grpc-go's
// returns at once. Close did not end the wait either.
func TestDialWaitEndsWithItsCall(t *testing.T) {
	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(testutil.ShortTempDir(t), "h.sock")
			l := listenUnix(t, path)
			held := make(chan net.Conn, 16)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					held <- c
				}
			}()
			t.Cleanup(func() {
				for {
					select {
					case c := <-held:
						c.Close()
					default:
						return
					}
				}
			})
			conn, err := grpcipc.NewClient("unix://" + path)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
				done <- err
			}()
			time.Sleep(200 * time.Millisecond)
			want := codes.Canceled
			if how == "cancel" {
				cancel()
			} else {
				conn.Close()
			}
			select {
			case err := <-done:
				took := time.Since(start)
				t.Logf("%s after 200 ms: the call returned after %v: %v", how, took, err)
				if status.Code(err) != want {
					t.Errorf("the call: %v, want %v", err, want)
				}
				if took > time.Second {
					t.Errorf("the call returned %v after it started, %v after its %s", took, took-200*time.Millisecond, how)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("the call had not returned 3 s after its %s (the client waits up to 20 s for the server's answer)", how)
				for range len(held) {
					(<-held).Close() // the dial ends, and the call with it
				}
				<-done
			}
		})
	}
}

// Held: the handoff to HTTP/2 against servers that answer the offer
// oddly. Each call fails (at its deadline, or at once), and Close leaves
// no goroutine and no connection behind: the server sees its connections
// closed.
func TestHandoffToOddServersLeavesNothing(t *testing.T) {
	settings := []byte{0, 0, 0, 4, 0, 0, 0, 0, 0} // an empty SETTINGS frame
	for _, tc := range []struct {
		name  string
		reply []byte
		hold  bool // the server keeps the connection open after its reply
		code  codes.Code
	}{
		{"SETTINGS, then silence", settings, true, codes.DeadlineExceeded},
		{"SETTINGS, then close", settings, false, codes.Unavailable},
		{"garbage, then close", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), false, codes.Unavailable},
		{"G and garbage", []byte("GARBAGE!"), true, codes.Unavailable},
		{"half a frame header", settings[:4], true, codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fpNoLeaks(t)
			path := filepath.Join(testutil.ShortTempDir(t), "o.sock")
			l := listenUnix(t, path)
			var accepted, closedByClient atomic.Int32
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					accepted.Add(1)
					go func() {
						defer c.Close()
						var offer [wire.OfferSize]byte
						if _, err := io.ReadFull(c, offer[:]); err != nil {
							return
						}
						c.Write(tc.reply)
						if !tc.hold {
							return
						}
						c.SetReadDeadline(time.Now().Add(5 * time.Second))
						if _, err := io.Copy(io.Discard, c); err == nil {
							closedByClient.Add(1)
						}
					}()
				}
			}()
			conn, err := grpcipc.NewClient("unix://" + path)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				_, err = greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
				cancel()
				if status.Code(err) != tc.code && status.Code(err) != codes.DeadlineExceeded {
					t.Errorf("SayHello: %v, want %v", err, tc.code)
				}
			}
			protocol := conn.Protocol()
			conn.Close()
			if tc.hold {
				deadline := time.Now().Add(2 * time.Second)
				for closedByClient.Load() < accepted.Load() && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n, m := closedByClient.Load(), accepted.Load(); n < m {
					t.Errorf("after Close, the client had closed %d of the %d connections the server accepted", n, m)
				}
			}
			t.Logf("last call: %v; protocol %q; connections accepted %d", err, protocol, accepted.Load())
		})
	}
}
