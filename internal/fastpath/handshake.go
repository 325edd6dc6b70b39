package fastpath

// The first bytes of a connection: a server tells the fast path's offer
// from HTTP/2 (Sniff), a client makes the offer and reads the answer
// (Offer). docs/protocol.md, "Choosing the protocol".

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"

	"github.com/grpcipc/grpcipc/internal/wire"
)

// Sniffed is what a connection's first bytes say.
type Sniffed struct {
	Read    []byte // the bytes read (for HTTP/2 to read again, unless Fast)
	Rest    []byte // when Fast: bytes read after the offer, the first frames'
	Fast    bool   // the client offers the fast path, in Version
	Version uint8  // the version to speak: the client's, at most wire.Version
	Broken  bool   // a grpcipc preface that is not one
	Err     error  // why reading stopped early, if it did
}

// Sniff reads a new connection's first bytes (its read deadline set) and
// tells which protocol they ask for: the fast path, offered in the
// SETTINGS of an HTTP/2 client preface (version 2 and later; see
// [wire.AppendOffer]) or by grpcipc's own preface (version 1's clients),
// or HTTP/2 (or anything else, for grpc-go to judge).
func Sniff(conn net.Conn) Sniffed {
	buf := make([]byte, 0, wire.OfferSize)
	n, err := io.ReadAtLeast(conn, buf[:cap(buf)], 1)
	buf = buf[:n]
	switch {
	case n == 0:
		return Sniffed{Err: err}
	case buf[0] == wire.Magic[0]:
		if n < wire.PrefaceSize {
			var m int
			m, err = io.ReadFull(conn, buf[n:wire.PrefaceSize])
			buf = buf[:n+m]
		} else {
			err = nil
		}
		if err != nil {
			return Sniffed{Read: buf, Broken: true, Err: err}
		}
		v, perr := wire.ParsePreface(buf[:wire.PrefaceSize])
		if perr != nil {
			return Sniffed{Read: buf, Broken: true}
		}
		// Frames may follow at once (version 1's offer had a PING).
		return Sniffed{Read: buf, Rest: buf[wire.PrefaceSize:], Fast: true, Version: min(v, wire.Version)}
	}
	read, v, err := wire.ReadOffer(conn, buf)
	if v >= 2 {
		return Sniffed{Read: read, Fast: true, Version: min(v, wire.Version)}
	}
	return Sniffed{Read: read, Err: err}
}

// Answer is a server's answer to the fast path's offer.
type Answer struct {
	Fast    bool          // the server speaks the fast path, in Version
	Version uint8         // of the fast path, as the server's preface said
	Reader  *bufio.Reader // when Fast: reads the connection, after the server's preface
	Pending []byte        // when !Fast: the server's first bytes (HTTP/2's, or not), for HTTP/2 to read again
}

// Offer writes the fast path's offer on conn (a valid HTTP/2 client
// preface, wire.AppendOffer) and reads the server's answer: grpcipc's
// preface, or anything else, which HTTP/2 is to judge. The caller sets
// and clears conn's deadlines.
func Offer(conn net.Conn) (Answer, error) {
	var offer [wire.OfferSize]byte
	if _, err := conn.Write(wire.AppendOffer(offer[:0], wire.Version)); err != nil {
		return Answer{}, err
	}
	br := bufio.NewReaderSize(conn, 32<<10)
	first, err := br.Peek(1)
	if err != nil {
		return Answer{}, err
	}
	if first[0] != wire.Magic[0] {
		read, _ := br.Peek(br.Buffered())
		return Answer{Pending: bytes.Clone(read)}, nil
	}
	reply, err := br.Peek(wire.PrefaceSize)
	if err != nil {
		return Answer{}, err
	}
	v, err := wire.ParsePreface(reply)
	if err != nil {
		return Answer{}, err
	}
	if v < 2 {
		return Answer{}, fmt.Errorf("it answered version %d of the fast path to an offer of version %d, which version 1 does not make", v, wire.Version)
	}
	if v > wire.Version {
		return Answer{}, fmt.Errorf("it answered version %d of the fast path to an offer of version %d: a server answers at most the version offered", v, wire.Version)
	}
	br.Discard(wire.PrefaceSize)
	return Answer{Fast: true, Version: v, Reader: br}, nil
}
