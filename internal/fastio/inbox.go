package fastio

import (
	"errors"
	"fmt"
	"sync"

	"github.com/grpcipc/grpcipc/internal/wire"
)

// Costs charged to a connection's Budget (docs/protocol.md, "Memory
// budgets"): a queued message costs its buffer's capacity and
// MsgOverhead, never less than what it occupies.
const (
	// MsgOverhead is charged per queued message besides its buffer: the
	// buffer's header, its slot in the queue (which may be twice as long
	// as the messages in it) and the allocator's rounding of a small
	// buffer.
	MsgOverhead = 96
	// MaxQueuedMessages is how many messages one stream may have waiting
	// to be taken; the next waits for room like a message over budget.
	MaxQueuedMessages = 64 << 10
)

// allocCost is what an allocation of n bytes occupies: Go rounds a small
// size up to its size class (at most an eighth more), a large one to
// whole 8 KiB pages.
func allocCost(n int) int {
	if n <= 32<<10 {
		return n + n/8
	}
	return n + 8<<10
}

// exactCost is what a copy of n bytes made by exactBuf costs.
func exactCost(n int) int { return allocCost(n) + MsgOverhead }

// WindowSender sends WINDOW frames: the connection an Inbox's stream is
// on.
type WindowSender interface {
	SendWindow(stream uint32, n int)
}

// inMsg is a received message, the bytes of its last frame, which the
// reader gives back to the sender when the message is taken, and what it
// is charged.
type inMsg struct {
	buf    *[]byte
	credit int
	cost   int
}

// Inbox is what a stream received and its flow control: the messages not
// yet taken, whether the peer has finished sending, and the windows both
// ways. The connection's reader adds; the stream's user takes. Every byte
// kept is charged to the budget given to Init.
type Inbox struct {
	mu      sync.Mutex
	queue   []inMsg
	first   [1]inMsg // the queue's first storage: most calls have one message
	head    int
	ended   bool          // the peer sends no more messages
	err     error         // the stream failed
	ready   chan struct{} // made by a waiter for the next message
	budget  *Budget       // what the kept bytes are charged to
	single  bool          // one message at most (the other side's cardinality)
	waiting bool          // the application waits in Next
	ws      WindowSender  // where Next gives back held parts
	id      uint32        // the stream, for ws
	got     int           // messages completed
	asm     *[]byte       // a message arriving in parts (reader only)
	asmCost int           // charged for asm
	recvWin int           // bytes the peer may still send (reader)
	credit  int           // bytes taken, not yet given back
	held    int           // bytes of parts kept while messages waited
	sendWin int           // bytes this side may still send
	winUp   chan struct{} // made by a waiter for the send window
}

// Init makes the inbox of stream id ready, charging what it keeps to
// budget (nil: to none). single says the peer may send one message only.
// ws sends the WINDOW frames Next gives back parts with (nil: none).
func (b *Inbox) Init(budget *Budget, single bool, ws WindowSender, id uint32) {
	b.queue = b.first[:0]
	b.recvWin = wire.InitialWindow
	b.sendWin = wire.InitialWindow
	b.budget = budget
	b.single = single
	b.ws, b.id = ws, id
}

// SetStream names the inbox's stream, when it is numbered after Init.
func (b *Inbox) SetStream(id uint32) { b.id = id }

// wake signals c, if someone made it to wait (b.mu held).
func wake(c chan struct{}) {
	if c == nil {
		return
	}
	select {
	case c <- struct{}{}:
	default:
	}
}

// waitChan returns *c, making it first (b.mu held).
func waitChan(c *chan struct{}) chan struct{} {
	if *c == nil {
		*c = make(chan struct{}, 1)
	}
	return *c
}

// ErrFlowControl: the peer sent more than its window.
var ErrFlowControl = fmt.Errorf("%w: a stream's MESSAGE bytes exceed its window", wire.ErrProtocol)

// ErrCardinality: a second message where the call has room for one.
var ErrCardinality = errors.New("more than one message on a call that takes one")

// Add takes a MESSAGE frame (reader). It returns bytes to give back at
// once (parts of a message, which are bounded by the size limit rather
// than the window, and frames for a stream that has failed), an error
// for the stream (a message over max, wrapping wire.ErrMessageTooLarge; a
// second message where one is allowed, ErrCardinality; ErrNoRoom when the
// budget or the queue has no room: nothing was taken, the frame may be
// added again once there is), or a protocol error for the connection.
func (b *Inbox) Add(f wire.Flags, p []byte, max int, t Taker) (giveBack int, streamErr, connErr error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.recvWin-len(p) < 0 {
		return 0, nil, ErrFlowControl
	}
	if b.ended || b.err != nil {
		// A message after the end, or for a failed stream: dropped, its
		// bytes given back.
		return len(p), nil, nil
	}
	last := f&wire.FlagMore == 0
	if b.single && b.got > 0 {
		return len(p), ErrCardinality, nil
	}
	if last && len(b.queue)-b.head >= MaxQueuedMessages {
		return 0, ErrNoRoom, nil
	}
	size := len(p)
	if b.asm != nil {
		size += len(*b.asm)
	}
	if size > max {
		b.dropParts()
		return len(p), &wire.TooLargeError{Size: size, Max: max}, nil
	}
	if b.asm == nil && last {
		m, err := b.store(p, t)
		if err != nil {
			return 0, err, nil
		}
		b.recvWin -= len(p)
		b.queue = append(b.queue, m)
		b.got++
		wake(b.ready)
		return 0, nil, nil
	}
	if err := b.growParts(len(p), max, last); err != nil {
		return 0, err, nil
	}
	if last && !b.budget.TryCharge(MsgOverhead) {
		return 0, ErrNoRoom, nil // the parts stay, charged; the frame comes again
	}
	*b.asm = append(*b.asm, p...)
	if !last {
		// A part: the size limit bounds a message in parts (and the
		// budget what it holds), so its bytes go back at once while the
		// application waits for it, having taken every message (a
		// message larger than the window must get through), or when it
		// is a call's only message (a unary handler runs once it is
		// whole); otherwise they count against the window like the rest,
		// and Next gives them back when the application comes to wait.
		if b.head == len(b.queue) && (b.waiting || b.single) {
			return len(p), nil, nil
		}
		b.recvWin -= len(p)
		b.held += len(p)
		return 0, nil, nil
	}
	b.recvWin -= len(p)
	b.queue = append(b.queue, inMsg{buf: b.asm, credit: len(p), cost: b.asmCost + MsgOverhead})
	b.asm, b.asmCost = nil, 0
	b.got++
	wake(b.ready)
	return 0, nil, nil
}

// store keeps a message that came in one frame, charging it: a large one
// in the reader's buffer when that is not much larger than it, the first
// of a queue in a pooled buffer, others in a copy of their own size.
func (b *Inbox) store(p []byte, t Taker) (inMsg, error) {
	var m inMsg
	m.credit = len(p)
	switch {
	case len(p) >= TakeThreshold && t.TakeCap() <= 2*len(p):
		m.cost = t.TakeCap() + MsgOverhead
		if !b.budget.TryCharge(m.cost) {
			return inMsg{}, ErrNoRoom
		}
		m.buf = t.Take(len(p))
	case b.head == len(b.queue) || len(p) >= TakeThreshold:
		// A pooled buffer of the payload's size class: less than twice
		// its size.
		m.buf = GetBufFor(len(p))
		m.cost = cap(*m.buf) + MsgOverhead
		if !b.budget.TryCharge(m.cost) {
			PutBuf(m.buf)
			return inMsg{}, ErrNoRoom
		}
		*m.buf = append(*m.buf, p...)
	default:
		m.cost = exactCost(len(p))
		if !b.budget.TryCharge(m.cost) {
			return inMsg{}, ErrNoRoom
		}
		m.buf = exactBuf(p)
	}
	return m, nil
}

// growParts makes room in the buffer of a message in parts for n more
// bytes, charging what it grows by: to twice what it needs while more
// parts are to come, up to max.
func (b *Inbox) growParts(n, limit int, last bool) error {
	have, c := 0, 0
	if b.asm != nil {
		have, c = len(*b.asm), cap(*b.asm)
	}
	need := have + n
	if b.asm != nil && need <= c {
		return nil
	}
	newCap := need
	if !last {
		newCap = min(limit, max(2*need, 2*c, smallBuf))
	}
	// A pooled buffer of newCap's size class (less than twice it), or
	// one of its own beyond the pools' sizes.
	nb := GetBufFor(newCap)
	cost := allocCost(cap(*nb))
	if !b.budget.TryCharge(cost - b.asmCost) {
		PutBuf(nb)
		return ErrNoRoom
	}
	if b.asm != nil {
		*nb = append(*nb, *b.asm...)
		PutBuf(b.asm)
	}
	b.asm = nb
	b.asmCost = cost
	return nil
}

// dropParts lets go of a message arriving in parts (b.mu held).
func (b *Inbox) dropParts() {
	if b.asm != nil {
		PutBuf(b.asm)
		b.asm = nil
	}
	b.budget.Release(b.asmCost)
	b.asmCost = 0
}

// End marks the peer's end of sending (err nil) or the stream's failure;
// messages already queued can still be taken, a message that had begun
// to arrive in parts is dropped.
func (b *Inbox) End(err error) {
	b.mu.Lock()
	if err != nil && b.err == nil {
		b.err = err
	}
	b.dropParts()
	b.ended = true
	wake(b.ready)
	wake(b.winUp)
	b.mu.Unlock()
}

// Abort fails the stream with err and lets go of everything it holds:
// messages not taken are dropped.
func (b *Inbox) Abort(err error) {
	b.End(err)
	b.Drain()
}

// Next waits for the next message. It returns nil and no error at the
// peer's end of sending, and done's error when done ends first. The
// caller gives the bytes of credit back when it has taken the message.
func (b *Inbox) Next(done <-chan struct{}, doneErr func() error) (*[]byte, int, error) {
	for {
		b.mu.Lock()
		if b.head < len(b.queue) {
			m := b.queue[b.head]
			b.queue[b.head] = inMsg{}
			b.head++
			if b.head == len(b.queue) {
				b.queue, b.head = b.queue[:0], 0
			}
			b.mu.Unlock()
			b.budget.Release(m.cost)
			return m.buf, m.credit, nil
		}
		if b.err != nil || b.ended {
			err := b.err
			b.mu.Unlock()
			return nil, 0, err
		}
		ready := waitChan(&b.ready)
		// Parts held while the application was busy go back now that it
		// waits, so that the rest of the message can come.
		held := b.held
		b.held = 0
		b.recvWin += held
		b.waiting = true
		b.mu.Unlock()
		if held > 0 && b.ws != nil {
			b.ws.SendWindow(b.id, held)
		}
		select {
		case <-ready:
		case <-done:
			b.mu.Lock()
			b.waiting = false
			b.mu.Unlock()
			return nil, 0, doneErr()
		}
		b.mu.Lock()
		b.waiting = false
		b.mu.Unlock()
	}
}

// Taken adds n bytes taken by the application; it returns how many to
// give back now, if enough have been taken to be worth a WINDOW frame.
func (b *Inbox) Taken(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.credit += n
	empty := b.head == len(b.queue)
	if empty {
		b.credit += b.held
		b.held = 0
	}
	if b.ended {
		return 0
	}
	// Give back in batches, or at once when the application waits and the
	// sender may be short of the window for its next part.
	if b.credit < windowThreshold && !(empty && b.recvWin < 2*MinSendChunk && b.credit > 0) {
		return 0
	}
	n, b.credit = b.credit, 0
	b.recvWin += n
	return n
}

// Drain releases the messages not taken and a message in parts.
func (b *Inbox) Drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	cost := 0
	for i := b.head; i < len(b.queue); i++ {
		PutBuf(b.queue[i].buf)
		cost += b.queue[i].cost
	}
	b.budget.Release(cost)
	b.dropParts()
	b.queue, b.head = b.first[:0], 0
	b.first[0] = inMsg{}
}

// Grow adds a WINDOW frame's increment to the send window.
func (b *Inbox) Grow(n uint32) {
	b.mu.Lock()
	b.sendWin += int(n)
	wake(b.winUp)
	b.mu.Unlock()
}

// Reserve waits until the send window is open and takes up to want bytes
// of it.
func (b *Inbox) Reserve(want int, done <-chan struct{}, doneErr func() error) (int, error) {
	for {
		b.mu.Lock()
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		if b.sendWin >= min(want, MinSendChunk) {
			n := min(want, b.sendWin)
			b.sendWin -= n
			b.mu.Unlock()
			return n, nil
		}
		winUp := waitChan(&b.winUp)
		b.mu.Unlock()
		select {
		case <-winUp:
		case <-done:
			return 0, doneErr()
		}
	}
}

// TryReserveUpTo is Reserve without the wait: it takes up to want bytes
// of the send window if it holds what Reserve waits for, else none.
func (b *Inbox) TryReserveUpTo(want int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil || b.sendWin < min(want, MinSendChunk) {
		return 0
	}
	n := min(want, b.sendWin)
	b.sendWin -= n
	return n
}

// TryReserve takes n bytes of the send window if it holds them.
func (b *Inbox) TryReserve(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sendWin >= n && b.err == nil {
		b.sendWin -= n
		return true
	}
	return false
}

// ReservePart reserves up to want bytes of the send window for the next
// part of a message going out in parts, for a sender that holds w's parts
// token (AcquireParts): when the window is short, it gives the token
// back while it waits, and takes it again. On an error the token is not
// held.
func (b *Inbox) ReservePart(w *Writer, want int, done <-chan struct{}, doneErr func() error) (int, error) {
	if n := b.TryReserveUpTo(want); n > 0 {
		return n, nil
	}
	w.ReleaseParts()
	n, err := b.Reserve(want, done, doneErr)
	if err != nil {
		return 0, err
	}
	if !w.AcquireParts(done) {
		return 0, doneErr()
	}
	return n, nil
}

// Charged returns what the inbox holds charged to its budget now.
func (b *Inbox) Charged() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.asmCost
	for i := b.head; i < len(b.queue); i++ {
		n += b.queue[i].cost
	}
	return n
}

// InParts says whether a message has begun to arrive in parts and not
// finished.
func (b *Inbox) InParts() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.asm != nil
}

// Largest returns the index of the inbox holding the most of its budget
// among inboxes (-1 when none holds anything): the call to end when a
// budget stays full, rather than the one whose frame found no room.
func Largest(inboxes []*Inbox) int {
	best, most := -1, 0
	for i, b := range inboxes {
		if n := b.Charged(); n > most {
			best, most = i, n
		}
	}
	return best
}
