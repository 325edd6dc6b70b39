package wire

import (
	"encoding/binary"
	"io"
)

// HTTP2Preface is what every HTTP/2 client sends first (RFC 9113,
// section 3.4).
const HTTP2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// OfferSetting is the HTTP/2 setting by which a client offers grpcipc's
// fast path, in the SETTINGS frame of its connection preface. It is in
// the range reserved for experimental use (0xf000-0xffff, RFC 9113,
// section 11.3); a peer ignores a setting it does not know (section 6.5.2).
const OfferSetting = 0xf1c0

// offerValue is OfferSetting's value: "GIP" and the highest version the
// client speaks.
func offerValue(v uint8) uint32 {
	return uint32('G')<<24 | uint32('I')<<16 | uint32('P')<<8 | uint32(v)
}

// The HTTP/2 frame header and the frame types ReadOffer reads.
const (
	http2HeaderSize   = 9
	http2TypeSettings = 0x4
	http2SettingSize  = 6
	// maxOfferSettings bounds the SETTINGS payload ReadOffer reads: HTTP/2's
	// smallest maximum frame size, which every client's first frame is within.
	maxOfferSettings = 16 << 10
)

// OfferSize is the length of [AppendOffer]'s bytes.
const OfferSize = len(HTTP2Preface) + http2HeaderSize + http2SettingSize

// AppendOffer appends what a grpcipc client sends first: HTTP/2's client
// connection preface, whose SETTINGS frame holds one setting, OfferSetting,
// offering version v of the fast path. A server that does not know the
// setting ignores it and speaks HTTP/2 on the connection; a grpcipc server
// answers with its own preface (AppendPreface) and speaks the fast path.
func AppendOffer(b []byte, v uint8) []byte {
	b = append(b, HTTP2Preface...)
	b = append(b, 0, 0, http2SettingSize, http2TypeSettings, 0, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, OfferSetting)
	return binary.BigEndian.AppendUint32(b, offerValue(v))
}

// ReadOffer reads what an HTTP/2 client sends first, its connection
// preface and SETTINGS frame, from r, after the bytes in have been read
// from it already. It returns every byte read (in included), for a server
// that serves the connection with HTTP/2 to read again, and the version
// of the fast path the SETTINGS offer (see AppendOffer), 0 if none. It
// stops at the first byte that shows there is no offer (the bytes are not
// HTTP/2's preface, or the first frame is not a SETTINGS frame on stream
// 0 of a valid length), with no error: the bytes are then for HTTP/2 to
// judge. err is the error of a read that failed before it could tell.
func ReadOffer(r io.Reader, in []byte) (read []byte, version uint8, err error) {
	read = in
	fill := func(n int) error {
		if len(read) >= n {
			return nil
		}
		if cap(read) < n {
			read = append(make([]byte, 0, n), read...)
		}
		k, err := io.ReadFull(r, read[len(read):n])
		read = read[:len(read)+k]
		return err
	}
	// The preface, compared as far as it has come.
	for {
		k := min(len(read), len(HTTP2Preface))
		if string(read[:k]) != HTTP2Preface[:k] {
			return read, 0, nil
		}
		if k == len(HTTP2Preface) {
			break
		}
		if err := fill(len(HTTP2Preface)); err != nil {
			if string(read) != HTTP2Preface[:min(len(read), len(HTTP2Preface))] {
				err = nil // not HTTP/2's preface, whatever followed
			}
			return read, 0, err
		}
	}
	at := len(HTTP2Preface)
	if err := fill(at + http2HeaderSize); err != nil {
		return read, 0, err
	}
	h := read[at : at+http2HeaderSize]
	n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	if h[3] != http2TypeSettings || h[4] != 0 || binary.BigEndian.Uint32(h[5:])&0x7fffffff != 0 ||
		n%http2SettingSize != 0 || n > maxOfferSettings {
		return read, 0, nil
	}
	at += http2HeaderSize
	if err := fill(at + n); err != nil {
		return read, 0, err
	}
	for p := read[at : at+n]; len(p) > 0; p = p[http2SettingSize:] {
		if binary.BigEndian.Uint16(p) != OfferSetting {
			continue
		}
		val := binary.BigEndian.Uint32(p[2:])
		if val&^0xff == offerValue(0) && val&0xff != 0 {
			version = uint8(val)
		}
	}
	return read, version, nil
}
