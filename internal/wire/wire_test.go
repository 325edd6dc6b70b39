package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestPreface(t *testing.T) {
	p := AppendPreface(nil, Version)
	if len(p) != PrefaceSize {
		t.Fatalf("preface is %d bytes", len(p))
	}
	if v, err := ParsePreface(p); err != nil || v != Version {
		t.Fatalf("ParsePreface = %d, %v", v, err)
	}
	if p[0] == 'P' {
		t.Fatal("a preface must not start as HTTP/2's does")
	}
	for _, bad := range [][]byte{p[:7], []byte("PRI * HT"), append([]byte("GIPC"), 1, 0, 0, 1), append([]byte("GIPC"), 0, 0, 0, 0)} {
		if _, err := ParsePreface(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("ParsePreface(%q) = %v; want ErrProtocol", bad, err)
		}
	}
}

func TestHeaderRoundTripAndRefusals(t *testing.T) {
	h := Header{Length: 1 << 20, Stream: 7, Type: TypeMessage, Flags: FlagMore}
	b := AppendHeader(nil, h)
	if got, err := ParseHeader(b); err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v; want %+v", got, err, h)
	}
	for _, bad := range []Header{
		{Type: TypeCall, Stream: 0}, {Type: TypeMessage}, {Type: TypeTrailers},
		{Type: TypeGoAway, Stream: 1}, {Type: TypePing, Stream: 3},
		{Type: 0, Stream: 1}, {Type: TypeFiles, Stream: 0}, {Type: 11, Stream: 1}, {Type: 255},
	} {
		if _, err := ParseHeader(AppendHeader(nil, bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("ParseHeader(%+v) = %v; want ErrProtocol", bad, err)
		}
	}
	if _, err := ParseHeader(b[:HeaderSize-1]); !errors.Is(err, ErrProtocol) {
		t.Error("a short header parsed")
	}
}

func TestCallRoundTrip(t *testing.T) {
	for _, c := range []Call{
		{Method: "/greet.Greeter/SayHello"},
		{Method: "/a.B/C", Timeout: 1500 * time.Millisecond, Metadata: []KV{{"x-trace", "abc"}, {"blob-bin", "\x00\xff\n"}}},
		{Method: "/a.B/C", Timeout: time.Nanosecond}, // rounds up to 1 µs, never to none
	} {
		got, err := ParseCall(AppendCall(nil, &c))
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		want := c
		want.Timeout = c.Timeout.Truncate(time.Microsecond)
		if c.Timeout > 0 && want.Timeout == 0 {
			want.Timeout = time.Microsecond
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %+v = %+v", want, got)
		}
	}
}

func TestPayloadRefusals(t *testing.T) {
	call := func(c Call) []byte { return AppendCall(nil, &c) }
	for name, p := range map[string][]byte{
		"empty":                      nil,
		"method without a slash":     call(Call{Method: "a.B/C"}),
		"method without a method":    call(Call{Method: "/a.B/"}),
		"method with three parts":    call(Call{Method: "/a/B/C"}),
		"upper-case metadata key":    call(Call{Method: "/a.B/C", Metadata: []KV{{"X-Trace", "a"}}}),
		"binary value in a text key": call(Call{Method: "/a.B/C", Metadata: []KV{{"x", "\x00"}}}),
		"trailing bytes":             append(call(Call{Method: "/a.B/C"}), 0),
		"length past the end":        {0x7f, 'a'},
		"huge metadata count":        append(appendBytes(nil, "/a.B/C"), 0, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"method longer than allowed": call(Call{Method: "/a.B/" + strings.Repeat("m", MaxMethodLen)}),
		"timeout over 100 years":     append(appendBytes(nil, "/a.B/C"), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0),
	} {
		if _, err := ParseCall(p); !errors.Is(err, ErrProtocol) {
			t.Errorf("ParseCall(%s) = %v; want ErrProtocol", name, err)
		}
	}
	if _, err := ParseTrailer(AppendTrailer(nil, &Trailer{Code: 17})); !errors.Is(err, ErrProtocol) {
		t.Error("status code 17 accepted")
	}
	if _, err := ParseWindow(AppendWindow(nil, 0)); !errors.Is(err, ErrProtocol) {
		t.Error("a WINDOW of 0 accepted")
	}
	if _, err := ParseGoAway([]byte{0, 0}); !errors.Is(err, ErrProtocol) {
		t.Error("a short GOAWAY accepted")
	}
}

func TestTrailerAndGoAwayRoundTrip(t *testing.T) {
	tr := Trailer{Code: 5, Message: "not found: x", Details: []byte{8, 5, 18, 1, 'x'}, Metadata: []KV{{"k", "v"}}}
	if got, err := ParseTrailer(AppendTrailer(nil, &tr)); err != nil || !reflect.DeepEqual(got, tr) {
		t.Errorf("trailer round trip = %+v, %v", got, err)
	}
	g := GoAway{LastStream: 41, Code: 14, Message: "server stopping"}
	if got, err := ParseGoAway(AppendGoAway(nil, &g)); err != nil || got != g {
		t.Errorf("goaway round trip = %+v, %v", got, err)
	}
	if inc, err := ParseWindow(AppendWindow(nil, 65536)); err != nil || inc != 65536 {
		t.Errorf("window round trip = %d, %v", inc, err)
	}
}

// TestReaderWriter: frames appended one after another come back in order; a
// frame over the limit is refused before its payload is read; a stream
// cut inside a frame is ErrUnexpectedEOF, between frames EOF.
func TestReaderWriter(t *testing.T) {
	w := AppendFrame(nil, 1, TypeCall, 0, AppendCall(nil, &Call{Method: "/a.B/C"}))
	msg := bytes.Repeat([]byte("m"), 10_000)
	w = AppendMessage(w, 1, msg, 4096)
	w, at := BeginFrame(w, 1, TypeMessage, 0)
	w = append(w, "in place"...)
	EndFrame(w, at)
	w = AppendFrame(w, 1, TypeHalfClose, 0, nil)
	wire := w
	r := NewReader(bufio.NewReader(bytes.NewReader(wire)), 4096)
	a := NewAssembler(1 << 20)
	var types []Type
	var msgs []string
	for {
		h, p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, h.Type)
		if h.Type == TypeMessage {
			if m, done, err := a.Add(h.Flags, p); err != nil {
				t.Fatal(err)
			} else if done {
				msgs = append(msgs, string(m))
			}
		}
	}
	want := []Type{TypeCall, TypeMessage, TypeMessage, TypeMessage, TypeMessage, TypeHalfClose}
	if !reflect.DeepEqual(types, want) {
		t.Errorf("frames %v, want %v", types, want)
	}
	if len(msgs) != 2 || msgs[0] != string(msg) || msgs[1] != "in place" {
		t.Errorf("messages %d: want the 10,000-byte message and \"in place\"", len(msgs))
	}

	// Over the limit: refused from the header alone.
	big := AppendHeader(nil, Header{Length: 4097, Stream: 1, Type: TypeMessage})
	if _, _, err := NewReader(bytes.NewReader(big), 4096).Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("a frame over the limit: %v; want ErrFrameTooLarge", err)
	}
	if _, _, err := NewReader(bytes.NewReader(wire[:len(wire)-3]), 4096).Next(); err != nil {
		t.Errorf("first frame of a cut stream: %v", err)
	}
	cut := NewReader(bytes.NewReader(wire[:HeaderSize+2]), 4096)
	if _, _, err := cut.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a stream cut inside a frame: %v; want ErrUnexpectedEOF", err)
	}

	// A message over the assembler's limit, refused as soon as it is.
	a = NewAssembler(100)
	if _, _, err := a.Add(FlagMore, make([]byte, 60)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Add(FlagMore, make([]byte, 60)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("a message over the limit: %v; want ErrMessageTooLarge", err)
	}
}

// FuzzReader: any bytes give frames with valid headers and payloads within
// the limit, or an error; never a panic or a payload over the limit.
func FuzzReader(f *testing.F) {
	w := AppendFrame(nil, 1, TypeCall, 0, AppendCall(nil, &Call{Method: "/a.B/C", Metadata: []KV{{"k", "v"}}}))
	w = AppendMessage(w, 1, []byte("hello"), 2)
	w = AppendFrame(w, 1, TypeTrailers, 0, AppendTrailer(nil, &Trailer{Code: 3, Message: "x"}))
	w = AppendFrame(w, 0, TypeGoAway, 0, AppendGoAway(nil, &GoAway{LastStream: 1}))
	f.Add(w)
	f.Add(AppendHeader(nil, Header{Length: 1 << 31, Stream: 1, Type: TypeMessage}))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 64
		r := NewReader(bytes.NewReader(data), max)
		a := NewAssembler(128)
		for {
			h, p, err := r.Next()
			if err != nil {
				return
			}
			if len(p) > max || uint32(len(p)) != h.Length {
				t.Fatalf("payload of %d bytes for header %+v", len(p), h)
			}
			switch h.Type {
			case TypeCall:
				if c, err := ParseCall(p); err == nil {
					if again, err := ParseCall(AppendCall(nil, &c)); err != nil || !reflect.DeepEqual(again, c) {
						t.Fatalf("CALL %+v does not round-trip: %+v, %v", c, again, err)
					}
				}
			case TypeHeaders:
				ParseMetadata(p)
			case TypeTrailers:
				if tr, err := ParseTrailer(p); err == nil {
					if again, err := ParseTrailer(AppendTrailer(nil, &tr)); err != nil || !reflect.DeepEqual(again, tr) {
						t.Fatalf("TRAILERS %+v does not round-trip: %+v, %v", tr, again, err)
					}
				}
			case TypeWindow:
				ParseWindow(p)
			case TypeGoAway:
				ParseGoAway(p)
			case TypeMessage:
				if m, done, err := a.Add(h.Flags, p); err == nil && done && len(m) > 128 {
					t.Fatalf("assembled %d bytes past the limit", len(m))
				}
			}
		}
	})
}

// A frame larger than the reader's buffer is read as it arrives: a peer
// that announces a large payload and stops holds only what it sent.
func TestReaderGrowsWithWhatArrives(t *testing.T) {
	const size = 1 << 20
	pr, pw := io.Pipe()
	r := NewReader(pr, DefaultMaxFrame)
	go func() {
		pw.Write(AppendHeader(nil, Header{Length: size, Stream: 1, Type: TypeMessage}))
		pw.Write(make([]byte, 1000))
		pw.Close()
	}()
	if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Next = %v, want io.ErrUnexpectedEOF", err)
	}
	if c := cap(r.buf); c > 2*growStep {
		t.Errorf("after 1,000 bytes of a %d-byte frame the buffer holds %d bytes", size, c)
	}
	// And a whole large frame still arrives intact.
	payload := bytes.Repeat([]byte("grpcipc!"), size/8)
	var w bytes.Buffer
	w.Write(AppendHeader(nil, Header{Length: size, Stream: 3, Type: TypeMessage}))
	w.Write(payload)
	r = NewReader(&w, DefaultMaxFrame)
	h, p, err := r.Next()
	if err != nil || h.Stream != 3 || !bytes.Equal(p, payload) {
		t.Fatalf("Next = %v, %d bytes, %v", h, len(p), err)
	}
}

func TestCallSize(t *testing.T) {
	for _, c := range []Call{
		{Method: "/a/b"},
		{Method: "/a/b", Timeout: time.Nanosecond, Metadata: []KV{{"k", "v"}}},
		{Method: "/" + strings.Repeat("x", 300) + "/b", Timeout: time.Hour, Metadata: []KV{{"k-bin", strings.Repeat("v", 70000)}, {"a", ""}}},
	} {
		if got, want := CallSize(&c), len(AppendCall(nil, &c)); got != want {
			t.Errorf("CallSize(%.40v) = %d, want %d", c, got, want)
		}
	}
}

// flakyReader returns its bytes a few at a time, failing every other read
// with errFlaky, as a connection whose read deadline passes does.
type flakyReader struct {
	b    []byte
	step int
	n    int
}

var errFlaky = errors.New("deadline")

func (f *flakyReader) Read(p []byte) (int, error) {
	f.n++
	if f.n%2 == 0 {
		return 0, errFlaky
	}
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), f.step, len(f.b))
	copy(p, f.b[:k])
	f.b = f.b[k:]
	return k, nil
}

// A Next that fails in the middle of a frame resumes it on the next call:
// every frame arrives whole, whichever byte the failures fall on, for
// payloads smaller and larger than the reader's buffer.
func TestReaderResumesAfterAnError(t *testing.T) {
	var w []byte
	var want [][]byte
	for i, size := range []int{0, 1, 9, 1000, 3 * growStep, 10, growStep + 5} {
		p := bytes.Repeat([]byte{byte(i + 1)}, size)
		want = append(want, p)
		w = AppendFrame(w, uint32(2*i+1), TypeMessage, 0, p)
	}
	for _, step := range []int{1, 3, 7, 4096, 1 << 20} {
		r := NewReader(&flakyReader{b: slices.Clone(w), step: step}, DefaultMaxFrame)
		var got [][]byte
		fails := 0
		for {
			h, p, err := r.Next()
			if errors.Is(err, errFlaky) {
				fails++
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("step %d: Next = %v", step, err)
			}
			if h.Stream != uint32(2*len(got)+1) {
				t.Fatalf("step %d: frame %d on stream %d", step, len(got), h.Stream)
			}
			got = append(got, slices.Clone(p))
			if r.InFrame() {
				t.Fatalf("step %d: InFrame after a whole frame", step)
			}
		}
		if fails == 0 || len(got) != len(want) {
			t.Fatalf("step %d: %d frames after %d failures, want %d", step, len(got), fails, len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("step %d: frame %d differs (%d bytes, want %d)", step, i, len(got[i]), len(want[i]))
			}
		}
	}
	// A stream that ends inside a header is still io.ErrUnexpectedEOF.
	r := NewReader(&flakyReader{b: w[:3], step: 1}, DefaultMaxFrame)
	for {
		_, _, err := r.Next()
		if errors.Is(err, errFlaky) {
			continue
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("a stream ending in a header: %v, want io.ErrUnexpectedEOF", err)
		}
		break
	}
}

func TestFilesPayload(t *testing.T) {
	for _, n := range []int{1, 2, MaxFilesPerFrame} {
		if got, err := ParseFiles(AppendFiles(nil, n)); err != nil || got != n {
			t.Errorf("ParseFiles(AppendFiles(%d)) = %d, %v", n, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {0}, {MaxFilesPerFrame + 1}, {255}, {1, 0}} {
		if _, err := ParseFiles(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("ParseFiles(%v) = %v; want ErrProtocol", bad, err)
		}
	}
}

// TestReaderOffsets: the Reader says where each frame began in the bytes
// it read, read whole or a byte at a time, and how many it has read.
func TestReaderOffsets(t *testing.T) {
	var b []byte
	var starts []uint64
	for i, n := range []int{0, 5, 100_000, 1} {
		starts = append(starts, uint64(len(b)))
		b = AppendFrame(b, uint32(i+1), TypeMessage, 0, bytes.Repeat([]byte{7}, n))
	}
	for _, r := range []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b))} {
		fr := NewReader(r, DefaultMaxFrame)
		for i, want := range starts {
			if _, _, err := fr.Next(); err != nil {
				t.Fatal(err)
			}
			if got := fr.FrameStart(); got != want {
				t.Errorf("frame %d began at %d, want %d", i, got, want)
			}
		}
		if fr.Offset() != uint64(len(b)) {
			t.Errorf("read %d bytes, Offset says %d", len(b), fr.Offset())
		}
	}
}
