package fastio

import (
	"bytes"
	"errors"
	"testing"

	"github.com/grpcipc/grpcipc/internal/wire"
)

func newTestBlock(limit int64) (*Block, *Budget) {
	b := NewBudget(limit, nil)
	return &Block{Charge: b.TryCharge, Release: b.Release}, b
}

func TestBlockJoinsParts(t *testing.T) {
	blk, budget := newTestBlock(64 << 20)
	payload := bytes.Repeat([]byte("x"), 3<<20+5)
	var got []byte
	held := 0
	for i := 0; i < len(payload); i += 1 << 20 {
		part := payload[i:min(i+1<<20, len(payload))]
		f := wire.FlagMore
		if i+1<<20 >= len(payload) {
			f = 0
		}
		p, charged, done, err, connErr := blk.Add(wire.Header{Stream: 1, Type: wire.TypeCall, Flags: f}, part)
		if err != nil || connErr != nil {
			t.Fatalf("part at %d: %v, %v", i, err, connErr)
		}
		if done {
			got, held = p, charged
		} else if budget.Used() < int64(i+len(part)) {
			t.Fatalf("after %d bytes, %d charged", i+len(part), budget.Used())
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("joined %d bytes, want %d", len(got), len(payload))
	}
	if held < len(payload) || int64(held) != budget.Used() {
		t.Errorf("held %d, budget used %d, payload %d", held, budget.Used(), len(payload))
	}
	// One frame alone passes through, uncharged.
	budget.Release(held)
	p, charged, done, _, _ := blk.Add(wire.Header{Stream: 3, Type: wire.TypeCall}, []byte("one"))
	if !done || string(p) != "one" || charged != 0 || budget.Used() != 0 {
		t.Errorf("a single frame: %q, %d charged, done %v, used %d", p, charged, done, budget.Used())
	}
}

func TestBlockRefusals(t *testing.T) {
	part := make([]byte, 1<<20)
	more := wire.Header{Stream: 1, Type: wire.TypeHeaders, Flags: wire.FlagMore}
	last := wire.Header{Stream: 1, Type: wire.TypeHeaders}

	// Over the limit: the rest is read and dropped, and the charge given back.
	blk, budget := newTestBlock(64 << 20)
	for range wire.MaxBlock/len(part) + 1 {
		if _, _, _, err, connErr := blk.Add(more, part); err != nil || connErr != nil {
			t.Fatal(err, connErr)
		}
	}
	p, _, done, err, _ := blk.Add(last, part)
	if !done || p != nil || !errors.Is(err, ErrBlockTooLarge) || budget.Used() != 0 {
		t.Errorf("over the limit: done %v, %d bytes, %v, %d charged", done, len(p), err, budget.Used())
	}

	// No room in the budget.
	blk, budget = newTestBlock(2 << 20)
	for range 3 {
		blk.Add(more, part)
	}
	if _, _, _, err, _ := blk.Add(last, part); !errors.Is(err, ErrNoRoom) || budget.Used() != 0 {
		t.Errorf("no room: %v, %d charged", err, budget.Used())
	}

	// Another frame between the parts is a protocol error.
	blk, _ = newTestBlock(64 << 20)
	blk.Add(more, part)
	for _, h := range []wire.Header{{Stream: 3, Type: wire.TypeHeaders}, {Stream: 1, Type: wire.TypeTrailers}} {
		if _, _, _, _, connErr := blk.Add(h, nil); !errors.Is(connErr, wire.ErrProtocol) {
			t.Errorf("%v on stream %d between parts: %v, want a protocol error", h.Type, h.Stream, connErr)
		}
	}

	// Drop gives back what an unfinished payload holds.
	blk, budget = newTestBlock(64 << 20)
	blk.Add(more, part)
	blk.Drop()
	if _, _, ok := blk.Pending(); ok || budget.Used() != 0 {
		t.Errorf("after Drop: pending %v, %d charged", ok, budget.Used())
	}
}
