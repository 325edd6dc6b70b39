package grpcipc_test

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
)

// Calls with 1,024 tiny metadata entries each are charged at no less than
// what they really hold.
func TestMetadataChargedAtWhatItHolds(t *testing.T) {
	endpoint, s := serveBig(t)
	rf := dialFast(t, endpoint)
	go func() {
		for {
			if _, _, err := rf.r.Next(); err != nil {
				return
			}
		}
	}()
	md := make([]wire.KV, 1024)
	for i := range md {
		md[i] = wire.KV{Key: "k" + strconv.Itoa(i)}
	}
	g0 := runtime.NumGoroutine()
	w := watchHeap()
	for id := uint32(1); id <= 511; id += 2 {
		rf.send(t, rawCallTo(id, sinkMethod, md...))
	}
	time.Sleep(1500 * time.Millisecond)
	used := connBudgetUsed(s)
	grown := w.grown()
	t.Logf("256 calls x 1024 empty-valued entries: charged %.1f MiB, heap grew %.1f MiB, goroutines +%d", float64(used)/MiB, float64(grown)/MiB, runtime.NumGoroutine()-g0)
	// The handlers' goroutines (a few KiB each) are the fixed overhead.
	if grown > used+8<<20 {
		t.Errorf("the calls' metadata was charged %.1f MiB but the heap grew by %.1f MiB", float64(used)/MiB, float64(grown)/MiB)
	}
}

// Stop returns promptly while a reader waits for budget room.
func TestStopWhileWaitingForBudget(t *testing.T) {
	endpoint, s := serveBig(t)
	rf := dialFast(t, endpoint)
	go func() {
		for {
			if _, _, err := rf.r.Next(); err != nil {
				return
			}
		}
	}()
	var frames [][]byte
	for id := uint32(1); id <= 41; id += 2 {
		frames = append(frames, rawCallTo(id, sinkMethod))
		for range 4 {
			frames = append(frames, rawFrame(id, wire.TypeMessage, 0, zeros[:1<<20]))
		}
	}
	go rf.c.Write([]byte(strings.Join(func() []string {
		var ss []string
		for _, f := range frames {
			ss = append(ss, string(f))
		}
		return ss
	}(), "")))
	time.Sleep(300 * time.Millisecond)
	t.Logf("budget in use %d", connBudgetUsed(s))
	start := time.Now()
	s.Stop()
	t.Logf("Stop took %v", time.Since(start))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop took %v while a connection's reader waited for room in its budget", took)
	}
}
