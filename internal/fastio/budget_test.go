package fastio

import (
	"errors"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
)

// TestInboxChargesWhatItHolds: every message queued and every part kept is
// charged at no less than its buffer's capacity, the budget refuses what
// does not fit (nothing is taken then), and taking or draining gives
// every byte back.
func TestInboxChargesWhatItHolds(t *testing.T) {
	budget := NewBudget(1<<20, nil)
	var b Inbox
	b.Init(budget, false, nil, 1)
	tk := &copyTaker{}
	n := 0
	for {
		_, serr, err := b.Add(0, []byte("x"), 4<<20, tk)
		if err != nil {
			t.Fatal(err)
		}
		if errors.Is(serr, ErrNoRoom) {
			break
		}
		n++
		if n > 1<<20 {
			t.Fatal("a 1 MiB budget took a million one-byte messages")
		}
	}
	if used := budget.Used(); used > 1<<20 || used < int64(n)*MsgOverhead {
		t.Errorf("%d one-byte messages charged %d bytes; want at least %d and at most the budget", n, used, n*MsgOverhead)
	}
	m, _, err := b.Next(nil, nil)
	if err != nil || m == nil {
		t.Fatal(m, err)
	}
	if _, serr, _ := b.Add(0, []byte("y"), 4<<20, tk); serr != nil {
		t.Errorf("after one message was taken, the next: %v", serr)
	}
	// A message in parts is charged as it grows.
	var c Inbox
	c.Init(budget, false, nil, 1)
	b.Drain()
	if used := budget.Used(); used != 0 {
		t.Fatalf("drained, the budget still holds %d bytes", used)
	}
	part := make([]byte, 256<<10)
	for i := 0; ; i++ {
		_, serr, _ := c.Add(wire.FlagMore, part, 4<<20, tk)
		if errors.Is(serr, ErrNoRoom) {
			break
		}
		if i > 4 {
			t.Fatal("parts past a 1 MiB budget were kept")
		}
	}
	if used := budget.Used(); used == 0 || used > 1<<20 {
		t.Errorf("parts charged %d bytes", used)
	}
	c.Drain()
	if used := budget.Used(); used != 0 {
		t.Errorf("drained, the budget still holds %d bytes", used)
	}
}

// TestCallerBudgetShared: connections charge their caller's budget too.
func TestCallerBudgetShared(t *testing.T) {
	caller := NewBudget(100, nil)
	a, b := NewBudget(80, caller), NewBudget(80, caller)
	if !a.TryCharge(60) || b.TryCharge(60) {
		t.Fatal("two connections of one caller held 120 bytes of its 100")
	}
	if !b.TryCharge(40) || caller.Used() != 100 {
		t.Fatalf("caller holds %d", caller.Used())
	}
	// Retry waits for a release anywhere in the caller's budget.
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.Release(60)
	}()
	start := time.Now()
	err := b.Retry(5*time.Second, nil, nil, func() error {
		if !b.TryCharge(30) {
			return ErrNoRoom
		}
		return nil
	})
	if err != nil || time.Since(start) > 2*time.Second {
		t.Errorf("Retry after another connection released: %v after %v", err, time.Since(start))
	}
	// ...and gives up after its wait.
	start = time.Now()
	if err := b.Retry(50*time.Millisecond, nil, nil, func() error { return ErrNoRoom }); err != ErrNoRoom || time.Since(start) < 50*time.Millisecond {
		t.Errorf("Retry with no room: %v after %v", err, time.Since(start))
	}
}

// TestBufferClasses: a pooled buffer for n bytes holds less than twice n.
func TestBufferClasses(t *testing.T) {
	for _, n := range []int{1, 4 << 10, 4<<10 + 1, 33 << 10, 1 << 20, 2 << 20} {
		for range 3 {
			b := GetBufFor(n)
			if c := cap(*b); c < n || c > max(2*n, smallBuf) {
				t.Errorf("GetBufFor(%d): capacity %d", n, c)
			}
			PutBuf(b)
		}
	}
	big := make([]byte, 0, 3<<20)
	PutBuf(&big) // dropped
	if b := GetBufFor(33 << 10); cap(*b) > 64<<10 {
		t.Errorf("after a 3 MiB buffer was given back, GetBufFor(33 KiB) has %d", cap(*b))
	}
}
