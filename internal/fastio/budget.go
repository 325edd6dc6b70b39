package fastio

import (
	"errors"
	"sync"
	"time"
)

// Budget is memory that a connection's peer can make this side hold:
// messages received and not yet taken by the application, messages
// arriving in parts, the metadata of open calls. Every such byte is
// charged before it is kept and released when it is let go; what does
// not fit waits for room (the connection is not read meanwhile), for a
// while, and then fails the call it belongs to. A budget may have a
// parent (the caller's, across its connections), which every charge must
// fit too.
type Budget struct {
	mu     sync.Mutex
	limit  int64
	used   int64
	peak   int64
	parent *Budget
	freed  chan struct{} // closed at the next release; made by a waiter
	refs   int           // connections sharing it (a caller's budget)
}

// NewBudget returns a budget of limit bytes within parent (nil: none).
func NewBudget(limit int64, parent *Budget) *Budget {
	return &Budget{limit: limit, parent: parent}
}

// Limit returns the budget's size.
func (b *Budget) Limit() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limit
}

// Used returns the bytes charged now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Peak returns the most bytes ever charged at once.
func (b *Budget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// Ref and Unref count the connections that share a budget; Unref returns
// true when none is left.
func (b *Budget) Ref() {
	b.mu.Lock()
	b.refs++
	b.mu.Unlock()
}

// Unref: see Ref.
func (b *Budget) Unref() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs--
	return b.refs <= 0
}

// TryCharge charges n bytes if they fit this budget and its parent's.
func (b *Budget) TryCharge(n int) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+int64(n) > b.limit {
		return false
	}
	if p := b.parent; p != nil {
		p.mu.Lock()
		ok := p.used+int64(n) <= p.limit
		if ok {
			p.used += int64(n)
			p.peak = max(p.peak, p.used)
		}
		p.mu.Unlock()
		if !ok {
			return false
		}
	}
	b.used += int64(n)
	b.peak = max(b.peak, b.used)
	return true
}

// Release gives back n bytes charged.
func (b *Budget) Release(n int) {
	if b == nil || n == 0 {
		return
	}
	b.release(int64(n))
	if b.parent != nil {
		b.parent.release(int64(n))
	}
}

func (b *Budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.mu.Unlock()
}

// freedChan returns a channel closed at the next release.
func (b *Budget) freedChan() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.freed == nil {
		b.freed = make(chan struct{})
	}
	return b.freed
}

// ErrNoRoom: the budget (or the stream's queue) has no room for what a
// frame would keep.
var ErrNoRoom = errors.New("no room in the memory budget")

// Retry calls try until it returns something other than ErrNoRoom,
// waiting between tries for memory to be released in b or its parent,
// for at most wait in all, or until done or stop is closed (either may be
// nil). It returns try's last result: ErrNoRoom when room never came.
func (b *Budget) Retry(wait time.Duration, done, stop <-chan struct{}, try func() error) error {
	err := try()
	if err != ErrNoRoom || b == nil {
		return err
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// The channels are made before the try, so that a release
		// between the try and the wait is not missed.
		mine := b.freedChan()
		var parents chan struct{}
		if b.parent != nil {
			parents = b.parent.freedChan()
		}
		if err = try(); err != ErrNoRoom {
			return err
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		select {
		case <-mine:
		case <-parents:
		case <-timer.C:
			return try()
		case <-done:
			return ErrNoRoom
		case <-stop:
			return ErrNoRoom
		}
	}
}

// RaiseTo raises the budget's limit to n if it is lower.
func (b *Budget) RaiseTo(n int64) {
	b.mu.Lock()
	b.limit = max(b.limit, n)
	b.mu.Unlock()
}

// closed says whether ch (which may be nil) is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// RetryOrEvict is Retry for a frame that must find room: when none came
// within wait (and neither done nor stop was closed), evict ends the call holding the most of the budget (other
// than the frame's own; false when there is none) and add is tried again,
// until it fits or nothing is left to evict. It returns add's last result.
func (b *Budget) RetryOrEvict(wait time.Duration, done, stop <-chan struct{}, add func() error, evict func() bool) error {
	err := b.Retry(wait, done, stop, add)
	if err == ErrNoRoom && (closed(done) || closed(stop)) {
		return err // the wait was called off: nothing is evicted for it
	}
	for err == ErrNoRoom && evict() {
		err = add()
	}
	return err
}
