package wire

import (
	"errors"
	"strings"
	"testing"
)

// The metadata limit is HTTP/2's header list size: keys, values and 32
// bytes an entry, 16 MiB; a trailer's message and details count too.
func TestHeaderListLimit(t *testing.T) {
	big := strings.Repeat("v", MaxHeaderListSize-1-32)
	at := []KV{{"k", big}} // exactly MaxHeaderListSize
	if n := ListSize(at); n != MaxHeaderListSize {
		t.Fatalf("ListSize = %d, want %d", n, MaxHeaderListSize)
	}
	if _, err := ParseCall(AppendCall(nil, &Call{Method: "/a.B/C", Metadata: at})); err != nil {
		t.Errorf("metadata of exactly the limit: %v", err)
	}
	over := []KV{{"k", big + "v"}}
	var le *LimitError
	if _, err := ParseCall(AppendCall(nil, &Call{Method: "/a.B/C", Metadata: over})); !errors.As(err, &le) || le.What != "metadata size" {
		t.Errorf("metadata a byte over the limit: %v, want a LimitError of its size", err)
	}
	if _, err := ParseMetadata(AppendMetadata(nil, over)); !errors.As(err, &le) {
		t.Errorf("HEADERS a byte over the limit: %v", err)
	}
	// A trailer's message and details are two more entries.
	tr := &Trailer{Code: 10, Message: "m", Details: []byte("d"), Metadata: []KV{{"k", big[:len(big)-66]}}}
	if n := TrailerListSize(tr); n != MaxHeaderListSize {
		t.Fatalf("TrailerListSize = %d, want %d", n, MaxHeaderListSize)
	}
	if _, err := ParseTrailer(AppendTrailer(nil, tr)); err != nil {
		t.Errorf("a trailer of exactly the limit: %v", err)
	}
	tr.Message += "m"
	if _, err := ParseTrailer(AppendTrailer(nil, tr)); !errors.As(err, &le) {
		t.Errorf("a trailer a byte over the limit: %v", err)
	}
	// Entries: 32 bytes each bounds them before any is read.
	many := make([]KV, MaxHeaderListSize/32+1)
	for i := range many {
		many[i] = KV{Key: "a"}
	}
	p := AppendCall(nil, &Call{Method: "/a.B/C", Metadata: many})
	if n := Entries(TypeCall, p); n != len(many) {
		t.Errorf("Entries = %d, want %d", n, len(many))
	}
	if _, err := ParseCall(p); !errors.As(err, &le) || le.What != "metadata entries" {
		t.Errorf("%d entries: %v, want a LimitError of entries", len(many), err)
	}
	// 1,025 entries, version 1's limit, are fine now.
	if _, err := ParseMetadata(AppendMetadata(nil, many[:MaxMetadataV1+1])); err != nil {
		t.Errorf("1,025 entries: %v", err)
	}
}

func TestEntries(t *testing.T) {
	md := []KV{{"a", "1"}, {"b", "2"}, {"c", "3"}}
	for name, c := range map[string]struct {
		t Type
		p []byte
	}{
		"CALL":     {TypeCall, AppendCall(nil, &Call{Method: "/a.B/C", Metadata: md})},
		"HEADERS":  {TypeHeaders, AppendMetadata(nil, md)},
		"TRAILERS": {TypeTrailers, AppendTrailer(nil, &Trailer{Code: 3, Message: "no", Details: []byte("d"), Metadata: md})},
	} {
		if n := Entries(c.t, c.p); n != len(md) {
			t.Errorf("%s: Entries = %d, want %d", name, n, len(md))
		}
		if n := Entries(c.t, c.p[:0]); n != 0 {
			t.Errorf("%s cut short: Entries = %d, want 0", name, n)
		}
	}
	huge := append(appendBytes(nil, "/a.B/C"), 0, 0xff, 0xff, 0xff, 0xff, 0x0f)
	if n := Entries(TypeCall, huge); n != MaxHeaderListSize/32+1 {
		t.Errorf("a count of 2^32-1: Entries = %d, want it capped at %d", n, MaxHeaderListSize/32+1)
	}
	if m, err := CallMethod(AppendCall(nil, &Call{Method: "/a.B/C", Metadata: md})); m != "/a.B/C" || err != nil {
		t.Errorf("CallMethod = %q, %v", m, err)
	}
	if _, err := CallMethod(AppendCall(nil, &Call{Method: "nope"})); err == nil {
		t.Error("CallMethod accepted a bad method")
	}
}
