package fastio

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
)

type copyTaker struct{ p []byte }

func (c *copyTaker) Take(n int) *[]byte {
	b := GetBuf()
	*b = append(*b, c.p[:n]...)
	return b
}

func (c *copyTaker) TakeCap() int { return cap(c.p) }

// windows records the WINDOW frames an Inbox sends.
type windows struct {
	mu sync.Mutex
	n  int
}

func (w *windows) SendWindow(_ uint32, n int) {
	w.mu.Lock()
	w.n += n
	w.mu.Unlock()
}

func (w *windows) sent() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// TestInboxWindow: parts of a message go back at once while the
// application waits for it (or it is the call's only message); otherwise
// they count against the window, and go back when the application comes
// to wait, or takes what waited; a peer past its window is a protocol
// error.
func TestInboxWindow(t *testing.T) {
	var only Inbox
	only.Init(nil, true, nil, 1)
	part := make([]byte, windowThreshold) // taking it (held) reaches a batch
	if give, tooLarge, err := only.Add(wire.FlagMore, part, 4<<20, &copyTaker{part}); give != len(part) || tooLarge != nil || err != nil {
		t.Fatalf("a part of a call's only message: give back %d, %v, %v; want %d at once", give, tooLarge, err, len(part))
	}

	var b Inbox
	var ws windows
	b.Init(nil, false, &ws, 1)
	if give, _, _ := b.Add(wire.FlagMore, part, 4<<20, &copyTaker{part}); give != 0 {
		t.Fatalf("a part while the application is busy gave back %d bytes at once", give)
	}
	got := make(chan *[]byte)
	go func() {
		m, _, _ := b.Next(nil, nil)
		got <- m
	}()
	for deadline := time.Now().Add(5 * time.Second); ws.sent() < len(part); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the application waits, and the held part's window was not given back (%d of %d)", ws.sent(), len(part))
		}
	}
	if give, _, _ := b.Add(wire.FlagMore, part, 4<<20, &copyTaker{part}); give != len(part) {
		t.Fatalf("a part while the application waits: give back %d, want %d at once", give, len(part))
	}
	if give, _, _ := b.Add(0, []byte("end"), 4<<20, &copyTaker{}); give != 0 {
		t.Fatalf("the last part of a message gave back %d bytes before it was taken", give)
	}
	if m := <-got; m == nil || len(*m) != 2*len(part)+3 {
		t.Fatalf("Next = %v", m)
	}
	// A message waits untaken: parts of the next one are held.
	if give, _, _ := b.Add(0, []byte("whole"), 4<<20, &copyTaker{}); give != 0 {
		t.Fatal("a whole message gave back its bytes at once")
	}
	if give, _, _ := b.Add(wire.FlagMore, part, 4<<20, &copyTaker{part}); give != 0 {
		t.Fatalf("a part while a message waits gave back %d bytes at once", give)
	}
	m, credit, err := b.Next(nil, nil)
	if err != nil || m == nil || string(*m) != "whole" {
		t.Fatalf("Next = %v, %v", m, err)
	}
	PutBuf(m)
	if give := b.Taken(credit); give < len(part) {
		t.Errorf("taking the waiting message gave back %d bytes; want the held part's %d and more", give, len(part))
	}

	// Past the window: a protocol error.
	var c Inbox
	c.Init(nil, false, nil, 1)
	big := make([]byte, 1<<20)
	var err2 error
	for i := 0; i < 5 && err2 == nil; i++ {
		_, _, err2 = c.Add(0, big, 8<<20, &copyTaker{big}) // complete messages, never taken
	}
	if !errors.Is(err2, ErrFlowControl) || !errors.Is(err2, wire.ErrProtocol) {
		t.Errorf("5 MiB untaken against a 4 MiB window: %v; want ErrFlowControl", err2)
	}
}
