package wire

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// Reader reads frames from a byte stream, refusing any payload longer than
// its limit before reading it. A read that fails with an error its
// underlying reader may recover from (a read deadline that passed) can be
// retried: the next Next resumes the frame where the failed one stopped,
// so that a goroutine that stops reading mid-frame can leave the rest of
// the frame to another.
type Reader struct {
	r   io.Reader
	max uint32
	hdr [HeaderSize]byte
	buf []byte
	hn  int    // bytes of hdr read of the frame in progress
	cur Header // the frame in progress, once hn == HeaderSize
	pn  int    // bytes of its payload read (into buf)
	// off: the bytes read so far; start: the offset of the first byte of
	// the frame in progress, or of the last one read
	off, start uint64
}

// NewReader returns a Reader of r for payloads of at most maxPayload
// bytes. r should be buffered: Reader reads a header, then a payload.
func NewReader(r io.Reader, maxPayload uint32) *Reader {
	return &Reader{r: r, max: maxPayload}
}

// Next reads the next frame. The payload is valid until the next call. At
// a clean end of the stream, between frames, it returns io.EOF; a stream
// that ends inside a frame is io.ErrUnexpectedEOF. After any other error
// of the underlying reader, Next may be called again to resume the frame.
func (r *Reader) Next() (Header, []byte, error) {
	if r.hn < HeaderSize {
		if r.hn == 0 {
			r.start = r.off
		}
		n, err := io.ReadFull(r.r, r.hdr[r.hn:])
		r.hn += n
		r.off += uint64(n)
		if err != nil {
			if r.hn > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Header{}, nil, err
		}
		h, err := ParseHeader(r.hdr[:])
		if err != nil {
			return Header{}, nil, err
		}
		if h.Length > r.max {
			return h, nil, fmt.Errorf("%w: %w: a %v frame of %d bytes on stream %d (at most %d)",
				ErrProtocol, ErrFrameTooLarge, h.Type, h.Length, h.Stream, r.max)
		}
		r.cur, r.pn = h, 0
	}
	h, n := r.cur, int(r.cur.Length)
	if cap(r.buf) >= n {
		p := r.buf[:n]
		got, err := io.ReadFull(r.r, p[r.pn:])
		r.pn += got
		r.off += uint64(got)
		if err != nil {
			return h, nil, unexpected(err)
		}
		r.hn = 0
		return h, p, nil
	}
	// A payload larger than the buffer: the buffer grows as the bytes
	// arrive, so that a peer that announces a large frame and sends
	// nothing holds no more memory than it has sent.
	p := r.buf[:r.pn]
	for len(p) < n {
		step := min(n-len(p), max(len(p), growStep))
		p = slices.Grow(p, step)
		got, err := io.ReadFull(r.r, p[len(p):len(p)+step])
		p = p[:len(p)+got]
		r.off += uint64(got)
		if err != nil {
			r.buf, r.pn = p, len(p)
			return h, nil, unexpected(err)
		}
	}
	r.buf, r.hn = p, 0
	return h, p, nil
}

// Offset returns how many bytes the Reader has read from its io.Reader.
func (r *Reader) Offset() uint64 { return r.off }

// FrameStart returns the offset (as Offset counts) of the first byte of
// the frame in progress, or of the last frame Next returned: the bytes a
// FILES frame's descriptors are attached to begin there.
func (r *Reader) FrameStart() uint64 { return r.start }

// InFrame says whether a frame has been begun and not yet read whole.
func (r *Reader) InFrame() bool { return r.hn > 0 }

// Swap hands over the buffer that holds the last payload Next returned
// (the payload is its first bytes) and reads on into b instead: a caller
// that keeps a large payload saves its copy.
func (r *Reader) Swap(b []byte) []byte {
	old := r.buf
	r.buf = b[:0]
	return old
}

// Cap returns the capacity of the buffer Swap would hand over.
func (r *Reader) Cap() int { return cap(r.buf) }

// growStep is how much a Reader's buffer grows at a time for a payload
// larger than it.
const growStep = 64 << 10

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendFrame appends a frame of the given stream, type and flags with
// payload.
func AppendFrame(b []byte, stream uint32, t Type, f Flags, payload []byte) []byte {
	b = AppendHeader(b, Header{Length: uint32(len(payload)), Stream: stream, Type: t, Flags: f})
	return append(b, payload...)
}

// BeginFrame appends the header of a frame whose payload the caller then
// appends (a message marshalled in place, say), and returns the offset to
// give EndFrame.
func BeginFrame(b []byte, stream uint32, t Type, f Flags) ([]byte, int) {
	return AppendHeader(b, Header{Stream: stream, Type: t, Flags: f}), len(b)
}

// EndFrame sets the length of the frame BeginFrame started at at.
func EndFrame(b []byte, at int) {
	n := uint32(len(b) - at - HeaderSize)
	b[at], b[at+1], b[at+2], b[at+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// AppendMessage appends msg as MESSAGE frames of at most maxFrame payload
// bytes each, all but the last with FlagMore.
func AppendMessage(b []byte, stream uint32, msg []byte, maxFrame int) []byte {
	for len(msg) > maxFrame {
		b = AppendFrame(b, stream, TypeMessage, FlagMore, msg[:maxFrame])
		msg = msg[maxFrame:]
	}
	return AppendFrame(b, stream, TypeMessage, 0, msg)
}

// ErrMessageTooLarge is wrapped by the error of a message longer than an
// Assembler's limit (gRPC's RESOURCE_EXHAUSTED).
var ErrMessageTooLarge = errors.New("message larger than the limit")

// TooLargeError is the error of a message longer than an Assembler's
// limit; it wraps [ErrMessageTooLarge].
type TooLargeError struct {
	Size int // the bytes come so far (the message has at least as many)
	Max  int // the limit
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%v: %d bytes or more, at most %d", ErrMessageTooLarge, e.Size, e.Max)
}

// Unwrap returns ErrMessageTooLarge.
func (e *TooLargeError) Unwrap() error { return ErrMessageTooLarge }

// Assembler puts a stream's message back together from its MESSAGE
// frames, refusing one longer than its limit as soon as it is.
type Assembler struct {
	max int
	buf []byte
}

// NewAssembler returns an Assembler for messages of at most max bytes.
func NewAssembler(max int) *Assembler { return &Assembler{max: max} }

// Add takes a MESSAGE frame's flags and payload, and returns the whole
// message once its last frame has come (done), valid until the next Add.
func (a *Assembler) Add(f Flags, payload []byte) (msg []byte, done bool, err error) {
	if len(a.buf)+len(payload) > a.max {
		n := len(a.buf) + len(payload)
		a.buf = a.buf[:0]
		return nil, false, &TooLargeError{Size: n, Max: a.max}
	}
	if f&FlagMore == 0 && len(a.buf) == 0 {
		return payload, true, nil // a message in one frame: no copy
	}
	a.buf = append(a.buf, payload...)
	if f&FlagMore != 0 {
		return nil, false, nil
	}
	msg = a.buf
	a.buf = a.buf[:0] // reused by the next message: msg is valid until then
	return msg, true, nil
}
