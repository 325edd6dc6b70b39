package fastpath

import (
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A server that stops reading and sends a lone call's reply in tiny parts
// makes whoever reads them write a WINDOW for each, until the client's
// socket buffer is full and the write blocks. The call still ends at its
// deadline: a leader (a call reading its own reply) hands a reply in parts
// to the background reader, since no read deadline reaches a write. (Found
// by an attack round: the leader took the parts and the call returned
// only when the writer's 10 s timeout closed the connection.)
func TestLeaderBlockedInWriteMissesDeadline(t *testing.T) {
	release := make(chan struct{})
	endpoint := atkServe(t, func(c *atkConn) {
		id, err := c.UntilHalfClose()
		if err != nil {
			return
		}
		c.Reply(id, wrapperspb.String("ok")) // the first call: answered
		if _, err := c.UntilHalfClose(); err != nil {
			return
		}
		id2 := id + 1
		// From now on nothing is read. The reply comes as 1-byte parts.
		go func() {
			part := e2e.RawFrame(id2, wire.TypeMessage, wire.FlagMore, []byte{0x0a})
			batch := make([]byte, 0, 1000*len(part))
			for range 1000 {
				batch = append(batch, part...)
			}
			for range 1000 {
				if err := c.Write(batch); err != nil {
					return
				}
			}
		}()
		<-release
	})
	t.Cleanup(func() { close(release) })
	conn := atkClient(t, endpoint)
	if took, err := atkInvoke(conn, 5*time.Second); err != nil {
		t.Fatalf("first call (%v): %v", took, err)
	}
	time.Sleep(5 * time.Millisecond) // the background reader retires: the next call leads
	took, err := atkInvoke(conn, 300*time.Millisecond)
	t.Logf("the call with a 300 ms deadline returned after %v: %v", took, err)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("the call: %v, want DeadlineExceeded", err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("the call with a 300 ms deadline returned after %v", took)
	}
}
