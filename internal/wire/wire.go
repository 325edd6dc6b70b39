// Package wire is the byte format of grpcipc's fast path (docs/protocol.md):
// the connection preface, frame headers, and the payloads of each frame
// type. It knows bytes only: no sockets, no goroutines, no gRPC types, so
// that it can be fuzzed on its own. Every parser checks lengths before it
// allocates and returns an error wrapping ErrProtocol for bad input; none
// panics.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrProtocol is wrapped by every error about malformed input.
var ErrProtocol = errors.New("grpcipc wire protocol error")

// ErrLimit is wrapped (with ErrProtocol) by the error for a payload that is
// well formed but holds more than this package's limits allow (a method
// name over MaxMethodLen, metadata over MaxHeaderListSize): a receiver that
// has read the whole frame may refuse its call and keep the connection.
var ErrLimit = errors.New("over a limit")

// ErrFrameTooLarge is wrapped by the error for a frame whose payload is
// longer than the reader allows.
var ErrFrameTooLarge = errors.New("frame too large")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// LimitError is the error for a payload over one of this package's limits;
// it wraps ErrProtocol and ErrLimit.
type LimitError struct {
	What string // "method name", "metadata entries" or "metadata size"
	N    uint64 // what the payload holds: bytes of the name, entries
	Max  uint64 // the limit
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: %v: %s: %d (at most %d)", ErrProtocol, ErrLimit, e.What, e.N, e.Max)
}

// Unwrap returns ErrProtocol and ErrLimit.
func (e *LimitError) Unwrap() []error { return []error{ErrProtocol, ErrLimit} }

// Version is the protocol version this package speaks.
const Version = 3

// FilesVersion is the first version with FILES frames (Version becomes it
// once both ends carry files).
const FilesVersion = 3

// Magic starts a preface. No HTTP/2 client sends it: HTTP/2 connections
// start with "PRI * HTTP/2.0".
const Magic = "GIPC"

// PrefaceSize is the length of a preface: Magic, the version, and three
// bytes that must be zero.
const PrefaceSize = 8

// AppendPreface appends the preface of version v.
func AppendPreface(b []byte, v uint8) []byte {
	return append(append(b, Magic...), v, 0, 0, 0)
}

// ParsePreface reads a preface and returns its version.
func ParsePreface(b []byte) (uint8, error) {
	if len(b) < PrefaceSize {
		return 0, protoErr("preface of %d bytes, want %d", len(b), PrefaceSize)
	}
	if string(b[:len(Magic)]) != Magic {
		return 0, protoErr("not a grpcipc preface: %q", b[:len(Magic)])
	}
	if b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return 0, protoErr("preface's reserved bytes are not zero")
	}
	if b[4] == 0 {
		return 0, protoErr("preface version 0")
	}
	return b[4], nil
}

// Type is a frame's type.
type Type uint8

// Frame types (docs/protocol.md says who sends each and what it carries).
const (
	TypeCall      Type = 1 // client: opens a stream: method, timeout, metadata
	TypeMessage   Type = 2 // both: a message, or part of one (FlagMore)
	TypeHalfClose Type = 3 // client: no more messages on this stream
	TypeCancel    Type = 4 // client: the call is cancelled
	TypeHeaders   Type = 5 // server: response metadata
	TypeTrailers  Type = 6 // server: ends the stream: status, details, metadata
	TypeWindow    Type = 7 // both: the reader took this many more bytes of a stream
	TypeGoAway    Type = 8 // server: no new streams; those above LastStream were not started
	TypePing      Type = 9 // both: echoed back with FlagAck
	// TypeFiles (version 3): both: descriptors for the stream's call,
	// attached (SCM_RIGHTS) to the frame's own bytes, sent alone
	TypeFiles Type = 10
)

func (t Type) String() string {
	names := [...]string{"", "CALL", "MESSAGE", "HALF_CLOSE", "CANCEL", "HEADERS", "TRAILERS", "WINDOW", "GOAWAY", "PING", "FILES"}
	if int(t) < len(names) && t != 0 {
		return names[t]
	}
	return fmt.Sprintf("TYPE(%d)", uint8(t))
}

// Flags modify a frame.
type Flags uint8

const (
	// FlagMore on a MESSAGE frame: the message continues in the next
	// MESSAGE frame of the stream. On a CALL, HEADERS or TRAILERS frame
	// (version 2): the payload continues in the next frame of the stream,
	// which has the same type.
	FlagMore Flags = 1 << 0
	// FlagAck on a PING frame: the answer to one.
	FlagAck Flags = 1 << 0
	// FlagFiles on a CALL frame (version 3; on each of its parts): the
	// client takes files with the response (FILES frames).
	FlagFiles Flags = 1 << 1
)

// Defaults of the protocol (docs/protocol.md).
const (
	// DefaultMaxFrame is the largest frame payload a reader accepts by
	// default: a 1 MiB message part and room for metadata.
	DefaultMaxFrame = 1<<20 + 64<<10
	// InitialWindow is how many MESSAGE payload bytes a stream may have in
	// flight each way before the reader sends WINDOW frames.
	InitialWindow = 4 << 20
)

// HeaderSize is the length of a frame header.
const HeaderSize = 10

// Header is a frame header: the payload's length, the stream it belongs to
// (0: the connection), its type and flags. Big-endian on the wire.
type Header struct {
	Length uint32
	Stream uint32
	Type   Type
	Flags  Flags
}

// AppendHeader appends h.
func AppendHeader(b []byte, h Header) []byte {
	b = binary.BigEndian.AppendUint32(b, h.Length)
	b = binary.BigEndian.AppendUint32(b, h.Stream)
	return append(b, byte(h.Type), byte(h.Flags))
}

// ParseHeader reads a header from the first HeaderSize bytes of b. It
// refuses types it does not know and streams that the type forbids.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, protoErr("frame header of %d bytes, want %d", len(b), HeaderSize)
	}
	h := Header{
		Length: binary.BigEndian.Uint32(b),
		Stream: binary.BigEndian.Uint32(b[4:]),
		Type:   Type(b[8]),
		Flags:  Flags(b[9]),
	}
	switch h.Type {
	case TypeCall, TypeMessage, TypeHalfClose, TypeCancel, TypeHeaders, TypeTrailers, TypeFiles:
		if h.Stream == 0 {
			return Header{}, protoErr("%v frame on stream 0", h.Type)
		}
	case TypeGoAway, TypePing:
		if h.Stream != 0 {
			return Header{}, protoErr("%v frame on stream %d, want 0", h.Type, h.Stream)
		}
	case TypeWindow:
	default:
		return Header{}, protoErr("unknown frame type %d", uint8(h.Type))
	}
	return h, nil
}
