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

// Attack: a leader (a unary call alone on its connection, reading its own
// reply) writes from inside frame(): a WINDOW for each part of its reply
// (a unary call gives the bytes of a part back at once), a CANCEL when it
// aborts. A server that stops reading and sends the reply in tiny parts
// fills the client's socket buffer with those WINDOW frames: the leader
// blocks in Write, which its context's end does not interrupt (only a read
// deadline is set). The call returns only when the Writer's WriteTimeout
// (10 s) closes the connection, not at its own deadline. Before the
// change the background reader blocked there, and the caller returned at
// its deadline.
func TestAttackLeaderBlockedInWriteMissesDeadline(t *testing.T) {
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
