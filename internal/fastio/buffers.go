package fastio

import (
	"math/bits"
	"sync"

	"github.com/grpcipc/grpcipc/internal/wire"
)

// Message buffers come from pools by size class (powers of two from
// 4 KiB to 2 MiB), so that a buffer handed out for n bytes holds less
// than twice n (a queued 1-byte message must not keep a megabyte alive,
// nor be charged for one).
const (
	minClassShift = 12 // 4 KiB
	maxClassShift = 21 // 2 MiB: larger buffers are not kept
	smallBuf      = 1 << minClassShift
	// maxKeptBuffer: buffers larger than this are not kept for reuse.
	maxKeptBuffer = 1 << maxClassShift
)

var pools [maxClassShift - minClassShift + 1]sync.Pool

// classOf returns the pool of buffers of at least n bytes' capacity, or
// -1 for n over maxKeptBuffer.
func classOf(n int) int {
	if n <= smallBuf {
		return 0
	}
	if n > maxKeptBuffer {
		return -1
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// GetBuf returns an empty message buffer of 4 KiB from the pool.
func GetBuf() *[]byte { return GetBufFor(smallBuf) }

// GetBufFor returns an empty message buffer of at least n bytes'
// capacity, and less than twice that (or n, when n is very large).
func GetBufFor(n int) *[]byte {
	c := classOf(n)
	if c < 0 {
		b := make([]byte, 0, n)
		return &b
	}
	if b, ok := pools[c].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 1<<(c+minClassShift))
	return &b
}

// PutBuf gives a buffer back to the pool of its size class (one too
// small or too large for any is dropped).
func PutBuf(b *[]byte) {
	n := cap(*b)
	if n < smallBuf || n > maxKeptBuffer {
		return
	}
	// The largest class the buffer fills: each pool's buffers hold at
	// least its size.
	c := bits.Len(uint(n)) - 1 - minClassShift
	*b = (*b)[:0]
	pools[c].Put(b)
}

// exactBuf returns a buffer holding a copy of p and no more room.
func exactBuf(p []byte) *[]byte {
	b := make([]byte, len(p))
	copy(b, p)
	return &b
}

// TakeThreshold: a message payload at least this long is taken from the
// frame reader's buffer rather than copied, when that buffer is not much
// larger than the payload.
const TakeThreshold = 32 << 10

// Taker hands over the frame reader's buffer, which holds the last
// payload.
type Taker interface {
	// Take takes the buffer holding the last payload, of n bytes, giving
	// the reader another.
	Take(n int) *[]byte
	// TakeCap is the capacity of the buffer Take would hand over.
	TakeCap() int
}

// ReaderTaker is the Taker of a connection's frame reader.
type ReaderTaker struct{ R *wire.Reader }

// Take implements Taker: the reader gets a buffer of the taken one's
// size class, which the next frames are likely to fit.
func (t ReaderTaker) Take(n int) *[]byte {
	nb := GetBufFor(n)
	old := t.R.Swap(*nb)
	*nb = old[:n]
	return nb
}

// TakeCap implements Taker.
func (t ReaderTaker) TakeCap() int { return t.R.Cap() }
