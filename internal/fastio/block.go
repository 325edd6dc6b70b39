package fastio

import (
	"errors"
	"fmt"

	"github.com/grpcipc/grpcipc/internal/wire"
)

// Block puts together a CALL, HEADERS or TRAILERS payload sent in parts
// (version 2): frames of the payload's type on its stream, all but the
// last with wire.FlagMore. A sender sends one such payload in parts at a
// time on a connection (holding the Writer's parts token), with other
// streams' frames between its parts; so a connection's reader has one
// Block. What it holds is charged to a Budget as it grows.
type Block struct {
	// Charge charges n bytes to the connection's budget, waiting for room
	// as its reader waits for room for messages; false: none came.
	Charge func(n int) bool
	// Release gives back n bytes charged.
	Release func(n int)

	active  bool
	id      uint32
	typ     wire.Type
	buf     []byte
	charged int
	err     error // why the payload will not be kept; the rest is skipped
	skipped int   // bytes skipped, once err is set
}

// ErrBlockTooLarge is wrapped by the error of a payload in parts longer
// than wire.MaxBlock.
var ErrBlockTooLarge = errors.New("a payload in parts over the limit")

// Pending reports whether a payload is being put together, and on which
// stream and of which type.
func (b *Block) Pending() (id uint32, t wire.Type, ok bool) { return b.id, b.typ, b.active }

// Add adds frame h, of payload p. It returns done when the frame is a
// payload's last (h.Flags has no wire.FlagMore): payload is then the whole
// payload (p itself when it came in one frame), valid until the next Add,
// and charged the bytes Add reports in charged, which the caller now owns
// (and releases, or keeps charged); or, instead of a payload, err says why
// it was not kept (ErrBlockTooLarge, ErrNoRoom): the call is refused, the
// connection lives. connErr is a protocol error: a frame of another type
// on the stream whose payload is in parts, or a second payload in parts
// on another stream before the first ended.
func (b *Block) Add(h wire.Header, p []byte) (payload []byte, charged int, done bool, err, connErr error) {
	more := h.Flags&wire.FlagMore != 0
	if !b.active {
		if !more {
			return p, 0, true, nil, nil // the usual case: one frame
		}
		b.active, b.id, b.typ = true, h.Stream, h.Type
	} else if h.Stream != b.id || h.Type != b.typ {
		return nil, 0, false, nil, fmt.Errorf("%w: a %v frame on stream %d while the %v payload of stream %d is in parts",
			wire.ErrProtocol, h.Type, h.Stream, b.typ, b.id)
	}
	if b.err == nil {
		b.grow(len(p))
	}
	if b.err != nil {
		b.skipped += len(p)
	} else {
		b.buf = append(b.buf, p...)
	}
	if more {
		return nil, 0, false, nil, nil
	}
	payload, charged, err = b.buf, b.charged, b.err // on an error, grow gave back the charge
	b.active, b.buf, b.charged, b.err, b.skipped = false, nil, 0, nil, 0
	return payload, charged, true, err, nil
}

// grow makes room for n more bytes: the buffer doubles, and each growth
// is charged before it is made.
func (b *Block) grow(n int) {
	need := len(b.buf) + n
	if need > wire.MaxBlock {
		b.err = fmt.Errorf("%w: %d bytes or more, at most %d", ErrBlockTooLarge, need, wire.MaxBlock)
		b.Release(b.charged)
		b.buf, b.charged = nil, 0
		return
	}
	if need <= cap(b.buf) {
		return
	}
	c := min(max(need, 2*cap(b.buf), 64<<10), wire.MaxBlock)
	if !b.Charge(c - b.charged) {
		b.err = ErrNoRoom
		b.Release(b.charged)
		b.buf, b.charged = nil, 0
		return
	}
	nb := make([]byte, len(b.buf), c)
	copy(nb, b.buf)
	b.buf, b.charged = nb, c
}

// Drop ends a payload in parts (its stream ended, or the connection),
// giving back what it holds.
func (b *Block) Drop() {
	if b.active && b.charged > 0 {
		b.Release(b.charged)
	}
	b.active, b.buf, b.charged, b.err, b.skipped = false, nil, 0, nil, 0
}
