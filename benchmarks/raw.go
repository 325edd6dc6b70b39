package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// --- raw: a bare Unix socket, the floor every stack sits on. A caller
// writes a 4-byte big-endian length and the bytes of its message, and the
// server writes them back; a stream is the server writing messages of the
// asked size until the client goes away. No RPC, no encoding: the best any
// RPC over this socket could do. Each caller has its own connection; each
// received message is read into a new buffer, as the other stacks' stubs
// do.

const (
	rawEcho   = byte('E')
	rawStream = byte('S')
	rawMax    = 64 << 20 // larger messages are refused
)

func serveRaw(path string) (string, func(), error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return "", nil, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rawServe(c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return path, func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

// rawServe serves one connection: echoes, or a stream.
func rawServe(c net.Conn) {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	var hdr [4]byte
	switch mode[0] {
	case rawEcho:
		buf := make([]byte, 4, 4+64<<10)
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n > rawMax {
				return
			}
			if cap(buf) < 4+int(n) {
				buf = make([]byte, 4+n)
			}
			buf = buf[:4+n]
			copy(buf, hdr[:])
			if _, err := io.ReadFull(c, buf[4:]); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	case rawStream:
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > rawMax {
			return
		}
		msg := make([]byte, 4+n)
		copy(msg, hdr[:])
		for {
			if _, err := c.Write(msg); err != nil {
				return
			}
		}
	}
}

// rawClient is one caller's connection for echoes; streams dial their own.
type rawClient struct {
	path string
	c    net.Conn
	buf  []byte
}

func (r *rawClient) echo(_ context.Context, in, out *wrapperspb.BytesValue) error {
	n := len(in.GetValue())
	r.buf = binary.BigEndian.AppendUint32(r.buf[:0], uint32(n))
	r.buf = append(r.buf, in.GetValue()...)
	if _, err := r.c.Write(r.buf); err != nil {
		return err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(hdr[:]); got != uint32(n) {
		return fmt.Errorf("raw echo: %d bytes back for %d", got, n)
	}
	out.Value = make([]byte, n)
	_, err := io.ReadFull(r.c, out.Value)
	return err
}

func (r *rawClient) stream(ctx context.Context, size int, started func()) (int64, error) {
	c, err := net.Dial("unix", r.path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	req := binary.BigEndian.AppendUint32([]byte{rawStream}, uint32(size))
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	return receive(ctx, started, func() (int, error) {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return 0, err
		}
		msg := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		return io.ReadFull(c, msg)
	})
}

func (r *rawClient) close() { r.c.Close() }

func dialRaw(path string, callers int) ([]client, error) {
	cs := make([]client, 0, callers)
	for range callers {
		c, err := net.Dial("unix", path)
		if err == nil {
			_, err = c.Write([]byte{rawEcho})
		}
		if err != nil {
			for _, c := range cs {
				c.close()
			}
			return nil, err
		}
		cs = append(cs, &rawClient{path: path, c: c})
	}
	return cs, nil
}
