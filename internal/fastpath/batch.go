package fastpath

// Unary calls read together run in turn (docs/protocol.md, "Who reads").
//
// When several callers share a connection, one read brings the requests
// of several unary calls. Handing each to a goroutine of its own costs a
// wake-up per call, and each reply written on its own a system call per
// call. So the reader gathers the unary calls whose requests are whole in
// what it has read (of methods that are not slow: under inlineSlow, and
// under batchBudget, on average), and runs their handlers one after the other on its goroutine,
// as it runs a call alone on its connection (inline.go), then reads on.
// Their replies wait in the writer (fastio.Writer.UnlockDeferred) and go
// out deferReplies at a time, and the rest when the batch is done.
//
// A batch is bounded: at most maxBatch calls, and batchBudget of their
// methods' average handler time, so that its last call waits little for
// the others, and nobody reads the connection meanwhile for little time.
// A handler that runs long all the same would hold up the calls after it
// and the reading: as for a handler run inline, the connection's inline
// state names the handler running, and the watchdog gives the reading to
// a worker once one has run through a whole tick (as does a handler that
// must wait for the client's window); it looks at the batches too, gives
// the calls waiting in a batch that has run through a whole tick (one
// handler that blocks, or many under a tick each: a method's first calls,
// whose average is not known yet, are all gathered) to workers, and
// writes the replies that waited. The reader never waits (for bytes, or for room in the
// memory budget, which the calls gathered may hold) while it holds a
// batch: it runs the batch first, or gives its calls to workers.

import (
	"sync"
	"time"
)

// Bounds of a batch.
const (
	maxBatch    = 64
	batchBudget = int64(100 * time.Microsecond)
	// deferReplies: the replies of a batch go out in writes of this many,
	// so that the client can begin on the first while the batch runs on.
	deferReplies = 8
)

// batch is unary calls that a reader gathered, run in turn by the
// goroutine that read them.
type batch struct {
	calls []*serverStream

	mu     sync.Mutex
	next   int  // the next call to run (calls[next:] wait)
	looked bool // the watchdog saw it running (watchdog's)
	given  bool // the watchdog gave the rest to workers
}

var batches = sync.Pool{New: func() any { return new(batch) }}

// more says whether calls of the batch wait to run after the one running:
// its reply may wait in the writer for theirs.
func (b *batch) more() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.next < len(b.calls)
}

// frameBuffered says whether a whole frame is buffered and none begun,
// so that reading it cannot wait (reader).
func (c *serverConn) frameBuffered() bool {
	return wholeFrameBuffered(c.br, c.r)
}

// gather adds ready unary call st, which may run on the reading
// goroutine (mayRunOnReader), to the reader's batch if a batch is being
// gathered or more frames are buffered. It says whether it did, and
// whether the batch is now full. A call whose method takes a batch's
// whole budget on average is never gathered: alone in its batch, it
// would hold the calls read with it, and batch after batch every call on
// the connection would run one after the other (none long enough for the
// watchdog), where workers run them side by side.
func (c *serverConn) gather(st *serverStream) (added, full bool) {
	if st.m.took.Load() >= batchBudget {
		return false, false
	}
	if len(c.batch) == 0 && !c.frameBuffered() {
		return false, false
	}
	c.batch = append(c.batch, st)
	c.batchTook += st.m.took.Load()
	return true, len(c.batch) >= maxBatch || c.batchTook >= batchBudget
}

// dropBatch gives each call of the reader's batch a worker of its own:
// the reader is about to wait for room in the memory budget, which the
// calls may be holding.
func (c *serverConn) dropBatch() {
	for i, st := range c.batch {
		c.s.workers.run(st)
		c.batch[i] = nil
	}
	c.batch, c.batchTook = c.batch[:0], 0
}

// runBatch runs the reader's batch on the reading goroutine, which
// nobody reads meanwhile, as a handler run inline (inline.go): the
// connection's inline state names the handler running, so that the
// watchdog gives the reading to a worker when one runs through a whole
// tick, as does a handler that must wait for the client's window. It
// says whether this goroutine still reads the connection afterwards
// (reader).
func (c *serverConn) runBatch() bool {
	b := batches.Get().(*batch)
	b.calls = append(b.calls[:0], c.batch...)
	clear(c.batch)
	c.batch, c.batchTook = c.batch[:0], 0
	b.next, b.looked, b.given = 0, false, false
	for _, st := range b.calls {
		st.batch.Store(b)
	}
	c.s.watch.addBatch(b)
	var (
		token uint64        // the inline state this goroutine set last
		prev  *serverStream // the call whose handler ran last
		reads = true        // this goroutine reads the connection
	)
	for {
		b.mu.Lock()
		if b.next == len(b.calls) {
			b.mu.Unlock()
			break
		}
		st := b.calls[b.next]
		b.next++
		b.mu.Unlock()
		t := uint64(st.id)<<1 | 1
		switch {
		case prev == nil:
			c.inline.Store(t) // this goroutine reads: the state is its own
			token = t
		case reads:
			if reads = c.inline.CompareAndSwap(token, t); reads {
				token = t
			} else {
				prev.rescued()
			}
		}
		st.run()
		prev = st
	}
	c.s.watch.removeBatch(b)
	c.w.Flush() // a reply that waited for a handler the watchdog left
	clear(b.calls)
	b.calls = b.calls[:0]
	batches.Put(b)
	switch {
	case prev == nil:
		return true
	case !reads:
		return false
	case c.inline.CompareAndSwap(token, 0):
		return true
	}
	prev.rescued()
	return false
}

// addBatch: a batch runs now; the watchdog must look.
func (w *inlineWatch) addBatch(b *batch) {
	w.bmu.Lock()
	if w.batches == nil {
		w.batches = map[*batch]*serverConn{}
	}
	w.batches[b] = b.calls[0].c
	w.bmu.Unlock()
	w.started()
}

// removeBatch: b has run.
func (w *inlineWatch) removeBatch(b *batch) {
	w.bmu.Lock()
	delete(w.batches, b)
	w.bmu.Unlock()
}

// lookBatches gives to workers the calls waiting in each batch that was
// running at the last look too, and writes the replies waiting for them;
// it says whether any batch runs. Its handler may have run all the while,
// or many handlers, each under a tick but together far over the batch's
// budget (a method whose average is not known yet: all its calls were
// gathered): either way, the calls waiting have waited a tick or more.
func (w *inlineWatch) lookBatches() (busy bool) {
	type stuck struct {
		c    *serverConn
		rest []*serverStream
	}
	var all []stuck
	w.bmu.Lock()
	for b, c := range w.batches {
		busy = true
		b.mu.Lock()
		if !b.looked || b.given {
			b.looked = true
			b.mu.Unlock()
			continue
		}
		rest := append([]*serverStream(nil), b.calls[b.next:]...)
		b.next, b.given = len(b.calls), true
		b.mu.Unlock()
		all = append(all, stuck{c, rest})
	}
	w.bmu.Unlock()
	for _, s := range all {
		for _, st := range s.rest {
			st.batch.Store(nil)
		}
		// Not on this goroutine: a client that does not read could hold
		// the write for WriteTimeout, and no handler would be rescued
		// meanwhile.
		go s.c.w.Flush()
		for _, st := range s.rest {
			w.s.workers.run(st)
		}
	}
	return busy
}
