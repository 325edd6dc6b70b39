package fastio

import (
	"errors"
	"testing"

	"github.com/grpcipc/grpcipc/internal/wire"
)

type copyTaker struct{ p []byte }

func (c *copyTaker) Take(n int) *[]byte {
	b := GetBuf()
	*b = append(*b, c.p[:n]...)
	return b
}

func (c *copyTaker) TakeCap() int { return cap(c.p) }

// TestInboxWindow: parts of a message go back at once while the
// application has taken everything; while messages wait, parts count
// against the window and go back only when those are taken; a peer past
// its window is a protocol error.
func TestInboxWindow(t *testing.T) {
	var b Inbox
	b.Init(nil, false)
	part := make([]byte, windowThreshold) // taking it (held) reaches a batch
	if give, tooLarge, err := b.Add(wire.FlagMore, part, 4<<20, &copyTaker{part}); give != len(part) || tooLarge != nil || err != nil {
		t.Fatalf("a part while nothing waits: give back %d, %v, %v; want %d at once", give, tooLarge, err, len(part))
	}
	if give, _, _ := b.Add(0, []byte("end"), 4<<20, &copyTaker{}); give != 0 {
		t.Fatalf("the last part of a message gave back %d bytes before it was taken", give)
	}
	// A message waits untaken: parts of the next one are held.
	if give, _, _ := b.Add(wire.FlagMore, part, 4<<20, &copyTaker{part}); give != 0 {
		t.Fatalf("a part while a message waits gave back %d bytes at once", give)
	}
	m, credit, err := b.Next(nil, nil)
	if err != nil || m == nil || len(*m) != len(part)+3 {
		t.Fatalf("Next = %v, %v", m, err)
	}
	PutBuf(m)
	if give := b.Taken(credit); give < len(part) {
		t.Errorf("taking the waiting message gave back %d bytes; want the held part's %d and more", give, len(part))
	}

	// Past the window: a protocol error.
	var c Inbox
	c.Init(nil, false)
	big := make([]byte, 1<<20)
	var err2 error
	for i := 0; i < 5 && err2 == nil; i++ {
		_, _, err2 = c.Add(0, big, 8<<20, &copyTaker{big}) // complete messages, never taken
	}
	if !errors.Is(err2, ErrFlowControl) || !errors.Is(err2, wire.ErrProtocol) {
		t.Errorf("5 MiB untaken against a 4 MiB window: %v; want ErrFlowControl", err2)
	}
}
