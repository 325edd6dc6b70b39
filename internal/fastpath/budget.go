package fastpath

// The fast path's memory budgets (docs/protocol.md, "Memory budgets"), as
// the server's and the client's connections apply them: the callers'
// budgets a server shares across connections, waiting for room and then
// ending the calls that hold the most, and what the refused call is told.
// The accounting itself is internal/fastio's Budget and Inbox.

import (
	"errors"
	"fmt"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastio"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// callerBudget returns the memory budget that a caller's fast-path
// connections share, counting one more connection on it.
func (s *Server) callerBudget(key string) *fastio.Budget {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.budgets[key]
	if b == nil {
		b = fastio.NewBudget(s.cfg.CallerBudget, nil)
		s.budgets[key] = b
	}
	b.Ref()
	return b
}

// releaseCallerBudget counts one connection less on a caller's budget.
func (s *Server) releaseCallerBudget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.budgets[key]; b != nil && b.Unref() {
		delete(s.budgets, key)
	}
}

// addWaiting adds a MESSAGE frame that found no room in the memory
// budget, waiting for room as long as budgetWait (the connection is not
// read meanwhile); if none comes, the stream fails with ErrNoRoom.
func (c *serverConn) addWaiting(st *serverStream, f wire.Flags, p []byte) (give int, serr, err error) {
	c.dropBatch() // the calls gathered may hold the room: they run now
	// Still no room after the wait: the calls holding the most of this
	// connection's budget end, not the one whose frame came last, until
	// the frame fits or its own call is the largest.
	c.budget.RetryOrEvict(budgetWait, c.ctx.Done(), nil, func() error {
		give, serr, err = st.in.Add(f, p, c.s.cfg.MaxRecv, c)
		if err != nil {
			return err
		}
		return serr
	}, func() bool {
		v := c.largestStream()
		if v == nil || v == st {
			return false
		}
		v.recvFailed(c.recvError(fastio.ErrNoRoom))
		return true
	})
	return give, serr, err
}

// largestStream returns the open stream holding the most of the
// connection's budget, if any holds some.
func (c *serverConn) largestStream() *serverStream {
	c.mu.Lock()
	streams := make([]*serverStream, 0, len(c.streams))
	inboxes := make([]*fastio.Inbox, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
		inboxes = append(inboxes, &st.in)
	}
	c.mu.Unlock()
	if i := fastio.Largest(inboxes); i >= 0 {
		return streams[i]
	}
	return nil
}

// recvError is the status of a call whose message could not be received.
func (c *serverConn) recvError(err error) error {
	switch {
	case errors.Is(err, fastio.ErrCardinality):
		return status.Error(codes.Internal, "grpcipc: cardinality violation: received multiple request messages for non-client-streaming RPC")
	case errors.Is(err, fastio.ErrNoRoom):
		c.logBudget()
		return status.Error(codes.ResourceExhausted, c.budgetMessage())
	}
	return status.Error(codes.ResourceExhausted, tooLargeMessage(err))
}

// budgetMessage says why a call found no room in the memory budgets.
func (c *serverConn) budgetMessage() string {
	return fmt.Sprintf("grpcipc: no room for what the call sent in the server's memory budgets (this connection: %d of %d bytes in use; this caller: %s): messages not taken by handlers hold it",
		c.budget.Used(), c.budget.Limit(), c.callerUse())
}

func (c *serverConn) callerUse() string {
	if c.key == "" {
		return "no budget of its own, the server's user or root"
	}
	c.s.mu.Lock()
	b := c.s.budgets[c.key]
	c.s.mu.Unlock()
	if b == nil {
		return "none"
	}
	return fmt.Sprintf("%d of %d bytes in use", b.Used(), b.Limit())
}

// logBudget logs, rate-limited per caller, that a call was ended for want
// of room in the memory budgets.
func (c *serverConn) logBudget() {
	c.caller.Warn("grpcipc: call ended with ResourceExhausted: the caller's memory budget is full",
		"conn_budget_used", c.budget.Used(), "conn_budget", c.budget.Limit())
}

// addWaiting adds a MESSAGE frame that found no room in the memory
// budget, waiting for room as long as budgetWait (the connection is not
// read meanwhile); then the calls holding the most of the budget end,
// until the frame fits or its own call is the largest (ErrNoRoom).
func (fc *ClientConn) addWaiting(st *clientStream, f wire.Flags, p []byte) (give int, serr, err error) {
	fc.budget.RetryOrEvict(budgetWait, fc.done, fc.leadDone, func() error {
		give, serr, err = st.in.Add(f, p, st.maxRecv, fc)
		if err != nil {
			return err
		}
		return serr
	}, func() bool {
		v := fc.largestStream()
		if v == nil || v == st {
			return false
		}
		v.abort(fc.budgetStatus())
		return true
	})
	return give, serr, err
}

// largestStream returns the open call holding the most of the
// connection's budget, if any holds some.
func (fc *ClientConn) largestStream() *clientStream {
	fc.mu.Lock()
	streams := make([]*clientStream, 0, len(fc.streams))
	inboxes := make([]*fastio.Inbox, 0, len(fc.streams))
	for _, st := range fc.streams {
		streams = append(streams, st)
		inboxes = append(inboxes, &st.in)
	}
	fc.mu.Unlock()
	if i := fastio.Largest(inboxes); i >= 0 {
		return streams[i]
	}
	return nil
}

// budgetStatus is the status of a call that found no room in the
// client's memory budget.
func (fc *ClientConn) budgetStatus() *status.Status {
	return status.Newf(codes.ResourceExhausted, "grpcipc: no room for what the server sent in this client's memory budget (%d of %d bytes in use by messages not yet received by the application)",
		fc.budget.Used(), fc.budget.Limit())
}

// budgetWait is how long a reader waits for room in a memory budget
// before the calls holding the most of it end (the root's
// WithConnMemoryBudget documents it: "within a second").
const budgetWait = time.Second

// chargeWaiting charges n bytes to b, waiting for room as long as a reader
// waits for room for a message (budgetWait), or until done or stop is
// closed.
func chargeWaiting(b *fastio.Budget, done, stop <-chan struct{}, n int) bool {
	return b.Retry(budgetWait, done, stop, func() error {
		if !b.TryCharge(n) {
			return fastio.ErrNoRoom
		}
		return nil
	}) == nil
}
