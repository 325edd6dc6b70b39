package fastpath

// Unary handlers run on the goroutine that read their request
// (docs/protocol.md, "Who reads").
//
// Handing the connection's reading to another goroutine before a handler
// runs costs a wake-up, and on a machine with idle CPUs the scheduler
// starts a thread to find the woken goroutine: a large part of a unary
// call's time. So when a unary call is alone on its connection (no other
// call open, no more bytes buffered), its handler runs on the reading
// goroutine, which then reads on; nobody reads the connection meanwhile.
// A handler that runs long would hold up a call that comes meanwhile on
// the same connection, so:
//   - a method whose handlers take inlineSlow or more, on a moving average
//     of their runs (wherever they ran), runs on workers: a slow handler
//     gains nothing from running inline, and one slow run (a first call
//     that warms a cache) does not make a method slow;
//   - a watchdog looks at the handlers that run inline every inlineTick
//     while there are any, and gives the reading of a connection whose
//     handler has run through a whole tick to a worker: a call that comes
//     while a method is slow for the first time waits at most two ticks,
//     and the method's next notInlineAfterRescue calls run on workers (a
//     handler that waits on something, a long poll or a call back to this
//     server on the same connection, would make the calls behind it wait
//     again);
//   - a handler that must wait for the client's window (a reply sent in
//     parts) gives the reading away at once.
// The watchdog sleeps while no handler runs inline, so an idle server has
// no timer. It looks only every inlineTick because a timer that wakes the
// process more often costs the calls themselves: at 1 ms, a 1 KiB call's
// median grew by half on a 2-CPU machine (docs/bench.md).

import (
	"sync"
	"sync/atomic"
	"time"
)

// How handlers run inline are watched.
const (
	inlineTick = 10 * time.Millisecond // how often the watchdog looks
	inlineSlow = time.Millisecond      // a method whose handlers take this long is slow
	// notInlineAfterRescue: calls of a method that run on workers after
	// the watchdog had to take the reading from one of its handlers
	notInlineAfterRescue = 1000
)

// inlineState is a connection's: 0 when a goroutine reads it; id<<1|1
// while the handler of stream id runs inline and nobody reads; id<<1 once
// the watchdog (or the handler) gave the reading to a worker.
type inlineState = atomic.Uint64

// mayRunOnReader says whether unary call st, whose request was just read,
// may run on the reading goroutine, alone (mayRunInline) or in a batch
// (batch.go): its method is not slow, and the watchdog did not have to
// take the reading from one of its handlers lately (reader; it counts
// the call as one of those that run on workers if not).
func (c *serverConn) mayRunOnReader(st *serverStream) bool {
	if st.m.took.Load() >= int64(inlineSlow) {
		return false
	}
	return !(st.m.notInline.Load() > 0 && st.m.notInline.Add(-1) >= 0)
}

// mayRunInline says whether unary call st, which may run on the reading
// goroutine (mayRunOnReader), may run there now: it is alone on the
// connection and no more bytes are buffered (reader).
func (c *serverConn) mayRunInline(st *serverStream) bool {
	if c.br.Buffered() > 0 || c.r.InFrame() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams) == 1 && c.streams[st.id] == st
}

// runInline runs st's handler on the reading goroutine and says whether
// this goroutine still reads the connection afterwards (false: a worker
// took the reading over meanwhile).
func (c *serverConn) runInline(st *serverStream) bool {
	token := uint64(st.id)<<1 | 1
	c.inline.Store(token)
	c.s.watch.started()
	st.run()
	if c.inline.CompareAndSwap(token, 0) {
		return true
	}
	st.rescued()
	return false
}

// rescued: the watchdog took the reading away from st's handler, run on
// the reading goroutine (inline, or in a batch). Unless it gave the
// reading away itself, a handler that waited this long (a long poll, a
// call back to this server on the same connection) will again, and the
// calls behind it waited with it: its method's next calls run on workers.
func (st *serverStream) rescued() {
	if !st.yielded {
		st.m.notInline.Store(notInlineAfterRescue)
	}
}

// observe adds how long a unary handler took to its method's moving
// average (1/8 of the new run; concurrent runs may lose an update, which
// a moving average can spare).
func (m *method) observe(d time.Duration) {
	avg := m.took.Load()
	m.took.Store(avg + (int64(d)-avg)/8)
}

// yieldReader gives the reading of the connection to a worker if st's
// handler runs inline (st's handler's).
func (c *serverConn) yieldReader(st *serverStream) {
	token := uint64(st.id)<<1 | 1
	if c.inline.Load() == token && c.inline.CompareAndSwap(token, token&^1) {
		st.yielded = true
		c.s.workers.run(c)
	}
}

// inlineWatch is a server's watchdog of handlers run inline.
type inlineWatch struct {
	s       *Server
	ticking atomic.Bool   // the watchdog looks every inlineTick
	wake    chan struct{} // wakes a watchdog that sleeps
	runs    atomic.Uint64 // handlers run inline so far, and batches

	bmu     sync.Mutex
	batches map[*batch]*serverConn // the batches running (batch.go), and their connections

	mu      sync.Mutex
	running bool          // the watchdog's goroutine was started
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the goroutine returns
}

// started: a handler runs inline now; the watchdog must look.
func (w *inlineWatch) started() {
	w.runs.Add(1)
	if w.ticking.Load() || !w.ticking.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	if !w.running {
		select {
		case <-w.stop:
			w.mu.Unlock()
			return // closed: nothing is watched
		default:
		}
		w.running = true
		go w.loop()
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// loop is the watchdog: asleep until a handler runs inline, then looking
// every inlineTick until a whole tick passed with none.
func (w *inlineWatch) loop() {
	defer close(w.done)
	t := time.NewTimer(inlineTick)
	t.Stop()
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
		runs := w.runs.Load()
		for {
			t.Reset(inlineTick)
			select {
			case <-t.C:
			case <-w.stop:
				t.Stop()
				return
			}
			busy := w.look()
			busy = w.lookBatches() || busy
			if now := w.runs.Load(); busy || now != runs {
				runs = now
				continue
			}
			// Asleep from now: a handler that starts inline after this
			// store wakes the watchdog; one that started before it is seen
			// by the look that follows.
			w.ticking.Store(false)
			if !(w.look() || w.lookBatches()) || !w.ticking.CompareAndSwap(false, true) {
				break
			}
		}
	}
}

// look gives to a worker the reading of each connection whose inline
// handler was running at the last look too, and says whether any handler
// runs inline.
func (w *inlineWatch) look() (busy bool) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		v := c.inline.Load()
		if v&1 == 0 {
			continue
		}
		busy = true
		if c.watchSeen != v {
			c.watchSeen = v // a token is one handler's run: ids do not repeat
			continue
		}
		if c.inline.CompareAndSwap(v, v&^1) {
			s.workers.run(c)
		}
	}
	return busy
}

// close stops the watchdog and waits for it.
func (w *inlineWatch) close() {
	w.mu.Lock()
	running := w.running
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.mu.Unlock()
	if running {
		<-w.done
	}
}
