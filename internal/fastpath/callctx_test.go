package fastpath

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

type ctxKey struct{}

func newCallCtx() *callCtx {
	base, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancel() // the values' parent is never cancelled: WithoutCancel
	return &callCtx{parent: context.WithoutCancel(base)}
}

// TestCallCtx: what context.WithCancel's contexts promise, callCtx keeps:
// values, Done before and after, the first cause, Cause, AfterFunc and
// stop, derived contexts cancelled with it without a goroutine of their
// own, and the deadline.
func TestCallCtx(t *testing.T) {
	c := newCallCtx()
	if c.Value(ctxKey{}) != "v" {
		t.Fatal("a value of the parent is lost")
	}
	if _, ok := c.Deadline(); ok || c.Err() != nil {
		t.Fatal("a new context has a deadline or an error")
	}
	done := c.Done()
	ran := make(chan struct{})
	stopRan := c.AfterFunc(func() { close(ran) })
	stopped := c.AfterFunc(func() { t.Error("a stopped AfterFunc ran") })
	if !stopped() || stopped() {
		t.Fatal("stop: true once, then false")
	}
	before := runtime.NumGoroutine()
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	grandchild, cancelGrandchild := context.WithTimeout(child, time.Hour)
	defer cancelGrandchild()
	if n := runtime.NumGoroutine(); n != before {
		t.Errorf("deriving two contexts started %d goroutines", n-before)
	}

	c.cancel(context.Canceled)
	c.cancel(context.DeadlineExceeded) // the first cause stays
	select {
	case <-done:
	default:
		t.Fatal("Done not closed by cancel")
	}
	<-ran
	if stopRan() {
		t.Error("stop after the run says it stopped it")
	}
	if !errors.Is(c.Err(), context.Canceled) || context.Cause(c) != context.Canceled {
		t.Errorf("Err %v, Cause %v; want Canceled for both", c.Err(), context.Cause(c))
	}
	<-grandchild.Done()
	if !errors.Is(child.Err(), context.Canceled) || !errors.Is(grandchild.Err(), context.Canceled) || context.Cause(grandchild) != context.Canceled {
		t.Errorf("derived contexts: %v, %v (cause %v)", child.Err(), grandchild.Err(), context.Cause(grandchild))
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done after cancel is not closed")
	}
	late := make(chan struct{})
	if c.AfterFunc(func() { close(late) })() {
		t.Error("stop of an AfterFunc on a cancelled context says it stopped it")
	}
	<-late

	// A context cancelled before anyone asked for Done.
	c2 := newCallCtx()
	c2.cancel(context.Canceled)
	<-c2.Done()

	// The deadline.
	c3 := newCallCtx()
	c3.setDeadline(10 * time.Millisecond)
	if d, ok := c3.Deadline(); !ok || time.Until(d) > 10*time.Millisecond {
		t.Fatalf("deadline %v, %v", d, ok)
	}
	<-c3.Done()
	if c3.Err() != context.DeadlineExceeded || context.Cause(c3) != context.DeadlineExceeded {
		t.Fatalf("after the deadline: %v (cause %v)", c3.Err(), context.Cause(c3))
	}
}
