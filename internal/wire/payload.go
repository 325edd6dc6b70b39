package wire

import (
	"encoding/binary"
	"strings"
	"time"
)

// Limits of what a payload may hold, whatever the frame size.
const (
	MaxMethodLen     = 1024 // bytes of a method name
	MaxStatusMessage = 64 << 10
	// MaxHeaderListSize bounds the metadata of a CALL, of HEADERS and of
	// TRAILERS (with the status message and details), counted as HTTP/2
	// counts a header list: each entry's key and value and 32 bytes.
	// 16 MiB, grpc-go's default limit each way; it also bounds the
	// entries (at most 524,288).
	MaxHeaderListSize = 16 << 20
	// MaxBlock is the largest CALL, HEADERS or TRAILERS payload a reader
	// puts together from parts (FlagMore): MaxHeaderListSize of metadata
	// encodes in fewer bytes, and a method name, a status message and the
	// lengths fit in what is left.
	MaxBlock = MaxHeaderListSize + 128<<10
	// MaxMetadataV1 is how many metadata entries a version-1 reader
	// accepts in one frame (which must hold the whole payload): a sender
	// keeps to it for a version-1 peer.
	MaxMetadataV1 = 1024
)

// entrySize is what HTTP/2 adds to a header list's size for an entry
// besides its key and value.
const entrySize = 32

// ListSize is md's size as HTTP/2 counts a header list: each entry's key
// and value and 32 bytes.
func ListSize(md []KV) int {
	n := 0
	for _, kv := range md {
		n += len(kv.Key) + len(kv.Value) + entrySize
	}
	return n
}

// TrailerListSize is t's size as HTTP/2 counts trailers: its metadata's,
// and the status message and details as two more entries.
func TrailerListSize(t *Trailer) int {
	return ListSize(t.Metadata) + len(t.Message) + len(t.Details) + 2*entrySize
}

// Entries returns the number of metadata entries a CALL, HEADERS or
// TRAILERS payload says it holds, without reading them (0 when the
// payload is cut short or malformed before the count: parsing it then
// fails), and at most MaxHeaderListSize/32 + 1: a reader charges its
// memory budget for them before it parses them.
func Entries(t Type, p []byte) int {
	r := cursor{p: p}
	switch t {
	case TypeCall:
		r.bytes("method", MaxMethodLen)
		r.uvarint("timeout")
	case TypeTrailers:
		r.uvarint("status code")
		r.bytes("status message", MaxStatusMessage)
		r.bytes("status details", len(p))
	}
	n := r.uvarint("metadata count")
	if r.err != nil {
		return 0
	}
	return int(min(n, MaxHeaderListSize/entrySize+1))
}

// TrailerDetails returns the status details of a TRAILERS payload
// without reading the rest (nil when the payload is cut short or
// malformed before them: parsing it then fails), for a reader that
// charges its memory budget for what they will hold before it parses
// them.
func TrailerDetails(p []byte) []byte {
	r := cursor{p: p}
	r.uvarint("status code")
	r.bytes("status message", MaxStatusMessage)
	d := r.bytes("status details", len(p))
	if r.err != nil {
		return nil
	}
	return d
}

// KV is one metadata entry. Keys ending in "-bin" carry any bytes; other
// values are printable ASCII, as in gRPC.
type KV struct {
	Key, Value string
}

// Call is a CALL frame's payload: the full method name
// ("/package.Service/Method"), the client's timeout (0: none) and the
// request metadata.
type Call struct {
	Method   string
	Timeout  time.Duration
	Metadata []KV
}

// Trailer is a TRAILERS frame's payload: the gRPC status code and
// message, the status details (a serialized google.rpc.Status, or none)
// and the trailing metadata.
type Trailer struct {
	Code     uint32
	Message  string
	Details  []byte
	Metadata []KV
}

// GoAway is a GOAWAY frame's payload: the last stream the server started
// (later ones were not, and may be retried), a gRPC status code and why.
type GoAway struct {
	LastStream uint32
	Code       uint32
	Message    string
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendCall appends c's payload.
func AppendCall(b []byte, c *Call) []byte {
	b = appendBytes(b, c.Method)
	t := c.Timeout.Microseconds()
	if t < 0 {
		t = 0
	}
	if c.Timeout > 0 && t == 0 {
		t = 1 // a timeout shorter than 1 µs is still a timeout
	}
	b = binary.AppendUvarint(b, uint64(t))
	return AppendMetadata(b, c.Metadata)
}

// ParseCall reads a CALL payload.
func ParseCall(p []byte) (Call, error) { return ParseCallInterned(p, nil) }

// ParseCallInterned is ParseCall with a function that turns the method's
// bytes into a string, so that a server can give the names it knows
// without a copy; nil copies.
func ParseCallInterned(p []byte, intern func([]byte) string) (Call, error) {
	r := cursor{p: p}
	var c Call
	if intern == nil {
		c.Method = r.str("method", MaxMethodLen)
	} else if b := r.bytes("method", MaxMethodLen); r.err == nil {
		c.Method = intern(b)
	}
	t := r.uvarint("timeout")
	if r.err == nil && t > uint64(maxTimeout/time.Microsecond) {
		return Call{}, protoErr("timeout of %d µs is too long", t)
	}
	c.Timeout = time.Duration(t) * time.Microsecond
	c.Metadata = r.metadata()
	if err := r.end("CALL"); err != nil {
		return Call{}, err
	}
	if err := checkMethod(c.Method); err != nil {
		return Call{}, err
	}
	return c, nil
}

// maxTimeout is the longest timeout a CALL carries (about 100 years,
// well inside time.Duration).
const maxTimeout = 100 * 365 * 24 * time.Hour

// checkMethod accepts "/service/method" with neither part empty.
func checkMethod(m string) error {
	svc, meth, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	if !strings.HasPrefix(m, "/") || !ok || svc == "" || meth == "" || strings.Contains(meth, "/") {
		return protoErr("method %q is not /package.Service/Method", m)
	}
	return nil
}

// AppendMetadata appends a metadata list (a HEADERS payload, and the end
// of CALL and TRAILERS payloads).
func AppendMetadata(b []byte, md []KV) []byte {
	b = binary.AppendUvarint(b, uint64(len(md)))
	for _, kv := range md {
		b = appendBytes(b, kv.Key)
		b = appendBytes(b, kv.Value)
	}
	return b
}

// ParseMetadata reads a HEADERS payload.
func ParseMetadata(p []byte) ([]KV, error) {
	r := cursor{p: p}
	md := r.metadata()
	if err := r.end("HEADERS"); err != nil {
		return nil, err
	}
	return md, nil
}

// AppendTrailer appends t's payload.
func AppendTrailer(b []byte, t *Trailer) []byte {
	b = binary.AppendUvarint(b, uint64(t.Code))
	b = appendBytes(b, t.Message)
	b = appendBytes(b, string(t.Details))
	return AppendMetadata(b, t.Metadata)
}

// ParseTrailer reads a TRAILERS payload.
func ParseTrailer(p []byte) (Trailer, error) {
	r := cursor{p: p}
	var t Trailer
	code := r.uvarint("status code")
	if r.err == nil && code > 16 {
		return Trailer{}, protoErr("status code %d is not a gRPC code", code)
	}
	t.Code = uint32(code)
	t.Message = r.str("status message", MaxStatusMessage)
	if d := r.bytes("status details", len(p)); len(d) > 0 {
		t.Details = append([]byte(nil), d...)
	}
	r.list = len(t.Message) + len(t.Details) + 2*entrySize
	t.Metadata = r.metadata()
	if err := r.end("TRAILERS"); err != nil {
		return Trailer{}, err
	}
	return t, nil
}

// WindowSize is the length of a WINDOW payload.
const WindowSize = 4

// AppendWindow appends a WINDOW payload: the bytes of MESSAGE payload the
// reader has taken, which the writer may now send.
func AppendWindow(b []byte, increment uint32) []byte {
	return binary.BigEndian.AppendUint32(b, increment)
}

// ParseWindow reads a WINDOW payload.
func ParseWindow(p []byte) (uint32, error) {
	if len(p) != WindowSize {
		return 0, protoErr("WINDOW payload of %d bytes, want %d", len(p), WindowSize)
	}
	inc := binary.BigEndian.Uint32(p)
	if inc == 0 {
		return 0, protoErr("WINDOW increment of 0")
	}
	return inc, nil
}

// FilesSize is the length of a FILES payload.
const FilesSize = 1

// MaxFilesPerFrame is the most descriptors one FILES frame announces: the
// most one message on a Unix socket carries (Linux's SCM_MAX_FD).
const MaxFilesPerFrame = 253

// AppendFiles appends a FILES payload: how many descriptors are attached
// to the frame.
func AppendFiles(b []byte, n int) []byte { return append(b, byte(n)) }

// ParseFiles reads a FILES payload.
func ParseFiles(p []byte) (int, error) {
	if len(p) != FilesSize {
		return 0, protoErr("FILES payload of %d bytes, want %d", len(p), FilesSize)
	}
	n := int(p[0])
	if n == 0 || n > MaxFilesPerFrame {
		return 0, protoErr("FILES frame announcing %d descriptors (1 to %d)", n, MaxFilesPerFrame)
	}
	return n, nil
}

// AppendGoAway appends g's payload.
func AppendGoAway(b []byte, g *GoAway) []byte {
	b = binary.BigEndian.AppendUint32(b, g.LastStream)
	b = binary.AppendUvarint(b, uint64(g.Code))
	return appendBytes(b, g.Message)
}

// ParseGoAway reads a GOAWAY payload.
func ParseGoAway(p []byte) (GoAway, error) {
	if len(p) < 4 {
		return GoAway{}, protoErr("GOAWAY payload of %d bytes", len(p))
	}
	r := cursor{p: p[4:]}
	g := GoAway{LastStream: binary.BigEndian.Uint32(p)}
	code := r.uvarint("status code")
	if r.err == nil && code > 16 {
		return GoAway{}, protoErr("status code %d is not a gRPC code", code)
	}
	g.Code = uint32(code)
	g.Message = r.str("message", MaxStatusMessage)
	if err := r.end("GOAWAY"); err != nil {
		return GoAway{}, err
	}
	return g, nil
}

// cursor reads a payload, remembering the first error.
type cursor struct {
	p    []byte
	err  error
	list int // the header list's size so far (MaxHeaderListSize)
}

func (r *cursor) uvarint(what string) uint64 { return r.uvarintOf(what, "") }

// uvarintOf reads a varint; what and suffix name it in an error (apart, so
// that no string is built unless there is one).
func (r *cursor) uvarintOf(what, suffix string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.p)
	if n <= 0 {
		r.err = protoErr("%s%s: bad or missing varint", what, suffix)
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *cursor) str(what string, max int) string {
	return string(r.bytes(what, max))
}

// bytes reads a string's bytes, valid as long as the payload.
func (r *cursor) bytes(what string, max int) []byte {
	n := r.uvarintOf(what, " length")
	if r.err != nil {
		return nil
	}
	if n <= uint64(len(r.p)) && n > uint64(max) && what == "method" {
		r.err = &LimitError{What: "method name", N: n, Max: uint64(max)}
		return nil
	}
	if n > uint64(len(r.p)) || n > uint64(max) {
		r.err = protoErr("%s of %d bytes (%d left, at most %d)", what, n, len(r.p), max)
		return nil
	}
	b := r.p[:n]
	r.p = r.p[n:]
	return b
}

func (r *cursor) metadata() []KV {
	n := r.uvarint("metadata count")
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.p)) { // each entry takes two bytes at least
		r.err = protoErr("%d metadata entries in %d bytes", n, len(r.p))
		return nil
	}
	if n > uint64(MaxHeaderListSize-r.list)/entrySize {
		r.err = &LimitError{What: "metadata entries", N: n, Max: uint64(MaxHeaderListSize-r.list) / entrySize}
		return nil
	}
	if n == 0 {
		return nil
	}
	md := make([]KV, 0, n)
	for range n {
		kb := r.bytes("metadata key", len(r.p))
		vb := r.bytes("metadata value", len(r.p))
		if r.err != nil {
			return nil
		}
		if r.list += len(kb) + len(vb) + entrySize; r.list > MaxHeaderListSize {
			r.err = &LimitError{What: "metadata size", N: uint64(r.list), Max: MaxHeaderListSize}
			return nil
		}
		k, v := string(kb), string(vb)
		if err := checkKV(k, v); err != nil {
			r.err = err
			return nil
		}
		md = append(md, KV{k, v})
	}
	return md
}

func (r *cursor) end(frame string) error {
	if r.err != nil {
		return r.err
	}
	if len(r.p) != 0 {
		return protoErr("%s payload has %d bytes after its end", frame, len(r.p))
	}
	return nil
}

// checkKV applies gRPC's metadata rules: keys of lower-case letters,
// digits, '-', '_' and '.'; values of printable ASCII unless the key ends
// in "-bin".
func checkKV(k, v string) error {
	if k == "" {
		return protoErr("empty metadata key")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return protoErr("metadata key %q: byte %q is not allowed", k, c)
		}
	}
	if strings.HasSuffix(k, "-bin") {
		return nil
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return protoErr("metadata %q: value byte %#x is not printable ASCII (use a -bin key)", k, c)
		}
	}
	return nil
}

// CheckKV applies gRPC's metadata rules to one entry, as a reader does:
// senders call it to refuse what the peer would refuse.
func CheckKV(k, v string) error { return checkKV(k, v) }

// CallSize is the length of c's payload: a sender compares it with the
// peer's frame limit before it sends.
func CallSize(c *Call) int {
	t := c.Timeout.Microseconds()
	if t <= 0 && c.Timeout > 0 {
		t = 1
	}
	if t < 0 {
		t = 0
	}
	return strLen(len(c.Method)) + uvarintLen(uint64(t)) + MetadataSize(c.Metadata)
}

// MetadataSize is the length of md's encoding.
func MetadataSize(md []KV) int {
	n := uvarintLen(uint64(len(md)))
	for _, kv := range md {
		n += strLen(len(kv.Key)) + strLen(len(kv.Value))
	}
	return n
}

func strLen(n int) int { return uvarintLen(uint64(n)) + n }

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// CallMethod reads only the method of a CALL payload: for a reader that
// refuses the call without reading its metadata.
func CallMethod(p []byte) (string, error) {
	r := cursor{p: p}
	m := r.str("method", MaxMethodLen)
	if r.err != nil {
		return "", r.err
	}
	if err := checkMethod(m); err != nil {
		return "", err
	}
	return m, nil
}
