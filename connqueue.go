package grpcipc

import (
	"net"
	"sync"
)

// connQueue is a listener whose connections are handed to it: what an
// embedded grpc.Server serves (the server's HTTP/2 connections, the
// refused connections the refusal server answers).
type connQueue struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

// newConnQueue makes a queue that holds up to buffered connections not
// yet accepted.
func newConnQueue(buffered int, addr net.Addr) *connQueue {
	return &connQueue{conns: make(chan net.Conn, buffered), done: make(chan struct{}), addr: addr}
}

// put hands c to the server, waiting until it accepts c or the queue is
// closed (then c is closed).
func (q *connQueue) put(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.done:
		c.Close()
	}
}

// offer hands c to the server if the queue has room, without waiting.
func (q *connQueue) offer(c net.Conn) bool {
	select {
	case q.conns <- c:
		return true
	default:
		return false
	}
}

// Accept returns the next connection handed over.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) close() { q.once.Do(func() { close(q.done) }) }

// Close ends the queue: grpc.Server's Stop and GracefulStop call it.
func (q *connQueue) Close() error {
	q.close()
	return nil
}

// drain closes the connections handed over and not accepted.
func (q *connQueue) drain() {
	for {
		select {
		case c := <-q.conns:
			c.Close()
		default:
			return
		}
	}
}

// Addr returns the address the queue was made with.
func (q *connQueue) Addr() net.Addr { return q.addr }
