package fastio

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// countConn records the writes made to it; it fails them once fail is set.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	fail   bool
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return 0, errors.New("broken")
	}
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *countConn) SetWriteDeadline(time.Time) error { return nil }

// TestWriterDeferred: what UnlockDeferred leaves goes out with the next
// Unlock or Flush, in one write, or at once when upTo callers deferred;
// Unsent says which bytes never went out and never will: those of a write
// that failed, or dropped after it; not those that wait, nor those a write
// took.
func TestWriterDeferred(t *testing.T) {
	c := &countConn{}
	w := &Writer{Conn: c}
	var marks []uint64
	for _, s := range []string{"a", "b", "c"} {
		b := w.Lock()
		*b = append(*b, s...)
		marks = append(marks, w.Mark())
		if err := w.UnlockDeferred(8); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.writes) != 0 || w.Unsent(marks[0]) {
		t.Fatalf("deferred frames were written: %q", c.writes)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(c.writes) != 1 || string(c.writes[0]) != "abc" || w.Unsent(marks[2]) {
		t.Fatalf("Flush wrote %q, want one write of \"abc\"", c.writes)
	}
	for i, s := range []string{"d", "e"} {
		b := w.Lock()
		*b = append(*b, s...)
		w.UnlockDeferred(2)
		if want := 1 + i; len(c.writes) != want {
			t.Fatalf("after %d deferred of 2: %d writes, want %d", i+1, len(c.writes), want)
		}
	}
	if string(c.writes[1]) != "de" {
		t.Fatalf("the second deferred of 2 wrote %q, want \"de\"", c.writes[1])
	}

	b := w.Lock()
	*b = append(*b, "f"...)
	mark := w.Mark()
	w.UnlockDeferred(8)
	c.mu.Lock()
	c.fail = true
	c.mu.Unlock()
	if err := w.Flush(); err == nil {
		t.Fatal("Flush on a broken connection: no error")
	}
	if !w.Unsent(mark) {
		t.Fatal("bytes whose write failed are not reported unsent")
	}
	if w.Unsent(marks[2]) {
		t.Fatal("bytes written before the error are reported unsent")
	}
	b = w.Lock()
	*b = append(*b, "g"...)
	mark = w.Mark()
	if err := w.UnlockDeferred(8); err == nil {
		t.Fatal("UnlockDeferred on a broken connection: no error")
	}
	if !w.Unsent(mark) {
		t.Fatal("bytes dropped after the error are not reported unsent")
	}
}
