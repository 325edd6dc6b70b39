package fastpath

import (
	"net"
	"testing"
)

// socketPair is a connected pair of TCP loopback sockets: Windows has no
// Unix socket pairs in Go's syscall package.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}
