package budget

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// Calls with 1,024 tiny metadata entries each are charged at no less than
// what they really hold.
func TestMetadataChargedAtWhatItHolds(t *testing.T) {
	endpoint, s := serveBig(t)
	rf := e2e.DialFast(t, endpoint)
	go func() {
		for {
			if _, _, err := rf.R.Next(); err != nil {
				return
			}
		}
	}()
	md := make([]wire.KV, 1024)
	for i := range md {
		md[i] = wire.KV{Key: "k" + strconv.Itoa(i)}
	}
	g0 := runtime.NumGoroutine()
	w := e2e.WatchHeap()
	for id := uint32(1); id <= 511; id += 2 {
		rf.Send(t, e2e.RawCallTo(id, e2e.SinkMethod, md...))
	}
	time.Sleep(1500 * time.Millisecond)
	used := connBudgetUsed(s)
	grown := w.Grown()
	t.Logf("256 calls x 1024 empty-valued entries: charged %.1f MiB, heap grew %.1f MiB, goroutines +%d", float64(used)/MiB, float64(grown)/MiB, runtime.NumGoroutine()-g0)
	// The handlers' goroutines (a few KiB each) are the fixed overhead.
	if grown > used+8<<20 {
		t.Errorf("the calls' metadata was charged %.1f MiB but the heap grew by %.1f MiB", float64(used)/MiB, float64(grown)/MiB)
	}
}
