package fastpath

// A call's context on the server, part of its stream.
//
// context.WithCancel and WithTimeout allocate twice each a call (the
// context and its cancel function); callCtx is the same context made from
// the stream's own memory. It is cancelled when the call ends, the client
// cancels it, its deadline passes, or its connection closes (the
// connection cancels each of its streams: the values' parent is never
// cancelled). It implements AfterFunc, so that contexts a handler derives
// from it (context.WithCancel, WithTimeout, AfterFunc) cost no goroutine,
// and its values' parent has no cancelCtx (context.WithoutCancel of the
// connection's), so that context.Cause of a cancelled call is its Err.

import (
	"context"
	"sync"
	"time"
)

// callCtx is a call's context (see above); the zero value with parent set
// is a context without deadline that is not cancelled.
type callCtx struct {
	parent   context.Context // the values; never cancelled
	deadline time.Time       // zero: none

	mu     sync.Mutex
	done   chan struct{} // made by the first Done, or closedChan
	err    error
	timer  *time.Timer // the deadline's
	afters []*afterFunc
}

// closedChan is the Done of a context cancelled before anyone asked.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Deadline returns the call's deadline, if it has one.
func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// Done returns a channel closed when the context is cancelled.
func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

// Err returns why the context was cancelled (context.Canceled or
// DeadlineExceeded), nil before.
func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Value returns the value of key, from the values' parent.
func (c *callCtx) Value(key any) any { return c.parent.Value(key) }

// String names the context, as the context package's do.
func (c *callCtx) String() string { return "grpcipc call context" }

// setDeadline makes the context end with DeadlineExceeded in d.
// Before anyone else sees the context (its deadline is read unlocked).
func (c *callCtx) setDeadline(d time.Duration) {
	c.deadline = time.Now().Add(d)
	c.mu.Lock() // the timer may fire before it is stored
	c.timer = time.AfterFunc(d, func() { c.cancel(context.DeadlineExceeded) })
	c.mu.Unlock()
}

// cancel ends the context with err, once: the first cause is kept.
func (c *callCtx) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done == nil {
		c.done = closedChan
	} else {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for _, a := range afters {
		a.once.Do(func() { go a.f() })
	}
}

// afterFunc is a function to run once the context is cancelled.
type afterFunc struct {
	once sync.Once
	f    func()
}

// AfterFunc runs f in a goroutine of its own once the context is
// cancelled (at once if it is); stop keeps it from running, and says
// whether it did (context.AfterFunc's contract; the context package uses
// it for contexts derived from this one).
func (c *callCtx) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		a.once.Do(func() { go f() })
		return func() bool { return false }
	}
	c.afters = append(c.afters, a)
	c.mu.Unlock()
	return func() bool {
		stopped := false
		a.once.Do(func() { stopped = true })
		if stopped {
			c.mu.Lock()
			for i, x := range c.afters {
				if x == a {
					c.afters = append(c.afters[:i], c.afters[i+1:]...)
					break
				}
			}
			c.mu.Unlock()
		}
		return stopped
	}
}
