package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// settingsFrame is an HTTP/2 SETTINGS frame (stream 0) of the given
// settings, as id/value pairs.
func settingsFrame(kv ...uint32) []byte {
	var p []byte
	for i := 0; i+1 < len(kv); i += 2 {
		p = binary.BigEndian.AppendUint16(p, uint16(kv[i]))
		p = binary.BigEndian.AppendUint32(p, kv[i+1])
	}
	return append([]byte{0, 0, byte(len(p)), http2TypeSettings, 0, 0, 0, 0, 0}, p...)
}

func TestReadOffer(t *testing.T) {
	offer := AppendOffer(nil, Version)
	if len(offer) != OfferSize {
		t.Fatalf("offer of %d bytes, OfferSize %d", len(offer), OfferSize)
	}
	// grpc-go's client preface: its SETTINGS hold known settings only.
	grpcGo := append([]byte(HTTP2Preface), settingsFrame(0x4, 4<<20, 0x6, 16<<20)...)
	mixed := append([]byte(HTTP2Preface), settingsFrame(0x4, 65535, OfferSetting, offerValue(7), 0x2, 0)...)
	cases := []struct {
		name    string
		in      []byte
		first   int // bytes given as read already
		version uint8
		read    int // bytes ReadOffer must return (and so have read)
		err     bool
	}{
		{"the offer", offer, 1, Version, len(offer), false},
		{"the offer, read already in part", offer, 30, Version, len(offer), false},
		{"the offer among other settings", mixed, 1, 7, len(mixed), false},
		{"grpc-go's preface", grpcGo, 1, 0, len(grpcGo), false},
		{"an HTTP/1.1 request", []byte("POST / HTTP/1.1\r\nHost: x\r\n\r\n"), 1, 0, 24, false}, // read as far as a preface would go
		{"the preface, then a HEADERS frame", append([]byte(HTTP2Preface), 0, 0, 0, 1, 4, 0, 0, 0, 1), 1, 0, len(HTTP2Preface) + 9, false},
		{"a SETTINGS frame on stream 1", append([]byte(HTTP2Preface), 0, 0, 0, 4, 0, 0, 0, 0, 1), 1, 0, len(HTTP2Preface) + 9, false},
		{"a SETTINGS frame of 7 bytes", append([]byte(HTTP2Preface), 0, 0, 7, 4, 0, 0, 0, 0, 0), 1, 0, len(HTTP2Preface) + 9, false},
		{"a SETTINGS ACK", append([]byte(HTTP2Preface), 0, 0, 0, 4, 1, 0, 0, 0, 0), 1, 0, len(HTTP2Preface) + 9, false},
		{"a SETTINGS frame larger than 16 KiB", append([]byte(HTTP2Preface), 0, 0x40, 0x02, 4, 0, 0, 0, 0, 0), 1, 0, len(HTTP2Preface) + 9, false},
		{"the offer's setting, version 0", append([]byte(HTTP2Preface), settingsFrame(OfferSetting, offerValue(0))...), 1, 0, len(HTTP2Preface) + 15, false},
		{"the offer's setting, another value", append([]byte(HTTP2Preface), settingsFrame(OfferSetting, 2)...), 1, 0, len(HTTP2Preface) + 15, false},
		{"the preface cut short", []byte(HTTP2Preface[:10]), 1, 0, 10, true},
		{"the offer cut short", offer[:len(offer)-2], 1, 0, len(offer) - 2, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := bytes.NewReader(c.in[c.first:])
			read, v, err := ReadOffer(r, c.in[:c.first:c.first])
			if (err != nil) != c.err {
				t.Fatalf("error %v, want one: %v", err, c.err)
			}
			if v != c.version {
				t.Errorf("version %d, want %d", v, c.version)
			}
			if !bytes.Equal(read, c.in[:c.read]) {
				t.Errorf("read %q, want %q", read, c.in[:c.read])
			}
		})
	}
}

// FuzzReadOffer: whatever a client sends, ReadOffer returns a prefix of
// it (what it read, for HTTP/2 to read again) and never reads beyond the
// first frame; an offer it finds is version 1 or more.
func FuzzReadOffer(f *testing.F) {
	f.Add(AppendOffer(nil, Version))
	f.Add(append([]byte(HTTP2Preface), settingsFrame(0x4, 4<<20)...))
	f.Add([]byte("PRI * HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		read, v, err := ReadOffer(bytes.NewReader(in[1:]), in[:1:1])
		if !bytes.HasPrefix(in, read) {
			t.Fatalf("read %q, not a prefix of %q", read, in)
		}
		if len(read) > len(HTTP2Preface)+http2HeaderSize+maxOfferSettings {
			t.Fatalf("read %d bytes, beyond the first frame", len(read))
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("error %v", err)
		}
		if v != 0 && err != nil {
			t.Fatalf("version %d with error %v", v, err)
		}
	})
}
