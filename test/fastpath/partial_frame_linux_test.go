package fastpath

import (
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Check (held): a server that stops inside a frame of a leader's reply
// (in its header, or its payload, small or larger than the reader's
// buffer) stalls the call no longer than its deadline; once the server
// sends the rest, the frame is read whole by whoever reads next, and the
// connection serves the next call.
func TestPartialFrameStallsNoLeader(t *testing.T) {
	for _, cut := range []string{"header", "payload", "large payload"} {
		t.Run(cut, func(t *testing.T) {
			rest := make(chan []byte, 1)
			endpoint := atkServe(t, func(c *atkConn) {
				id, err := c.UntilHalfClose()
				if err != nil {
					return
				}
				c.Reply(id, wrapperspb.String("ok"))
				if id, err = c.UntilHalfClose(); err != nil {
					return
				}
				var msg []byte
				switch cut {
				case "large payload":
					msg, _ = proto.Marshal(wrapperspb.Bytes(make([]byte, 300<<10)))
				default:
					msg, _ = proto.Marshal(wrapperspb.String("a reply of some length"))
				}
				full := append(e2e.RawFrame(id, wire.TypeMessage, 0, msg), e2e.RawFrame(id, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{}))...)
				at := wire.HeaderSize + 5
				switch cut {
				case "header":
					at = 4
				case "large payload":
					at = wire.HeaderSize + 100<<10
				}
				c.Write(full[:at])
				rest <- full[at:]
				// The next call: its CALL comes after the first call's
				// CANCEL; the rest of the frame goes first.
				for {
					h, _, err := c.R.Next()
					if err != nil {
						return
					}
					if h.Type == wire.TypeCall {
						c.Write(<-rest)
						if _, err := c.UntilHalfClose(); err != nil {
							return
						}
						c.Reply(h.Stream, wrapperspb.String("third"))
					}
				}
			})
			conn := atkClient(t, endpoint)
			if _, err := atkInvoke(conn, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			took, err := atkInvoke(conn, 200*time.Millisecond)
			if status.Code(err) != codes.DeadlineExceeded || took > 700*time.Millisecond {
				t.Errorf("the call the server stopped inside its reply: %v after %v", err, took)
			}
			reply := new(wrapperspb.StringValue)
			ctx := e2e.Context(t)
			if err := conn.Invoke(ctx, atkUnary, wrapperspb.String("q"), reply); err != nil || reply.GetValue() != "third" {
				t.Errorf("the next call: %v, %q", err, reply.GetValue())
			}
		})
	}
}
