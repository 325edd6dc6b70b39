package grpcipc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func connBudgetUsed(s *grpcipc.Server) int64 {
	conns, _ := grpcipc.BudgetsInUse(s)
	var n int64
	for _, u := range conns {
		n += u
	}
	return n
}

// waitUsedChange polls until the connection budget's use differs from old.
func waitUsedChange(s *grpcipc.Server, old int64) int64 {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if u := connBudgetUsed(s); u != old {
			return u
		}
		time.Sleep(200 * time.Microsecond)
	}
	return connBudgetUsed(s)
}

// A stream whose handler ends (its deadline) while the reader waits for
// room in the budget for that stream's frame: the frame is dropped, not
// charged to a stream no one drains (a red-team run leaked 2.25 MiB a
// round this way).
func TestBudgetReleasedWhenHandlerEndsDuringWait(t *testing.T) {
	endpoint, s := serveBig(t)
	rf := dialFast(t, endpoint)
	limit := int64(grpcipc.DefaultConnMemoryBudget)
	var mu sync.Mutex
	trailers := map[codes.Code]int{}
	go func() {
		for {
			h, p, err := rf.r.Next()
			if err != nil {
				return
			}
			if h.Type == wire.TypeTrailers {
				tr, _ := wire.ParseTrailer(p)
				mu.Lock()
				trailers[codes.Code(tr.Code)]++
				mu.Unlock()
			}
		}
	}()
	msg := func(stream uint32, fl wire.Flags, n int) []byte {
		return rawFrame(stream, wire.TypeMessage, fl, zeros[:n])
	}
	next := uint32(1)
	for round := range 4 {
		t0 := time.Now()
		b := next
		next += 2
		rf.send(t, rawFrame(b, wire.TypeCall, 0, wire.AppendCall(nil, &wire.Call{Method: sinkMethod, Timeout: 2 * time.Second})))
		used := waitUsedChange(s, connBudgetUsed(s))
		for range 3 {
			rf.send(t, msg(b, 0, 1<<20))
			used = waitUsedChange(s, used)
		}
		var as []uint32
		nA := 0
		t.Logf("after B: %d", used)
		for used+300<<10 < limit {
			a := next
			next += 2
			as = append(as, a)
			rf.send(t, rawCallTo(a, sinkMethod))
			used = waitUsedChange(s, used)
			for range 16 {
				if used+300<<10 >= limit {
					break
				}
				rf.send(t, msg(a, 0, 256<<10))
				used = waitUsedChange(s, used)
				nA++
			}
		}
		t.Logf("round %d: filled to %d of %d in %v with %d streams, %d messages of 256 KiB", round, used, limit, time.Since(t0), len(as), nA)
		time.Sleep(time.Until(t0.Add(1600 * time.Millisecond)))
		rf.send(t, msg(b, wire.FlagMore, 1<<20)) // no room: the reader waits; B's deadline passes meanwhile
		time.Sleep(1500 * time.Millisecond)
		for _, a := range as {
			rf.send(t, rawFrame(a, wire.TypeCancel, 0, nil))
		}
		time.Sleep(300 * time.Millisecond)

		t.Logf("round %d: after every stream ended, the connection's budget holds %d bytes", round, connBudgetUsed(s))
	}
	mu.Lock()
	t.Logf("trailers: %v", trailers)
	mu.Unlock()
	// The consequence: a legit 4 MiB upload on the same connection.
	if u := connBudgetUsed(s); u > 0 {
		t.Errorf("budget leaked: %d bytes held with no stream open", u)
	}
	_ = context.Background
	_ = wrapperspb.Bytes
}

// A well-behaved client streams messages to a handler that returns after
// the first: whatever the reader adds as the handler ends, nothing stays
// charged.
func TestBudgetReleasedByEarlyReturningHandlers(t *testing.T) {
	endpoint, s := serveBig(t)
	conn := newClient(t, endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := &wrapperspb.BytesValue{Value: make([]byte, 64<<10)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				st, err := conn.NewStream(ctx, &uploadDesc.Streams[1], "/grpcipc.test.Up/First")
				if err != nil {
					t.Error(err)
					return
				}
				for range 20 {
					if st.SendMsg(m) != nil {
						break
					}
				}
				st.CloseSend()
				st.RecvMsg(m)
			}
		}()
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	if u := connBudgetUsed(s); u > 0 {
		t.Errorf("budget leaked by early-returning handlers: %d bytes held with no stream open", u)
	}
}
