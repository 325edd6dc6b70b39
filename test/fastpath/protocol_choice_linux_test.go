package fastpath

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// http2ClientPreface is what every HTTP/2 client sends first (RFC 9113,
// section 3.4).
const http2ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// kestrelListener makes a grpc.Server behave as Kestrel does on a
// connection without TLS (Http2Connection.TryReadPrefaceAsync): the
// server sends nothing until it has read the client's first 24 bytes; if
// they are HTTP/2's preface, it serves the connection (grpc-go's SETTINGS
// go out only then); if not, it reads on until it has seen a line feed
// (it checks whether they are an HTTP/1.x request line, up to 8 KiB), and
// then sends GOAWAY (PROTOCOL_ERROR) and closes.
type kestrelListener struct {
	net.Listener
	conns   chan net.Conn
	refused atomic.Int32 // connections whose first bytes were not HTTP/2's
	once    sync.Once
	done    chan struct{}
}

func newKestrelListener(l net.Listener) *kestrelListener {
	k := &kestrelListener{Listener: l, conns: make(chan net.Conn), done: make(chan struct{})}
	go k.loop()
	return k
}

func (k *kestrelListener) loop() {
	for {
		c, err := k.Listener.Accept()
		if err != nil {
			k.once.Do(func() { close(k.done) })
			return
		}
		go func() {
			var first [len(http2ClientPreface)]byte
			if _, err := io.ReadFull(c, first[:]); err != nil {
				c.Close()
				return
			}
			if string(first[:]) != http2ClientPreface {
				seen := first[:]
				for !bytes.Contains(seen, []byte("\n")) && len(seen) < 8<<10 {
					var more [512]byte
					n, err := c.Read(more[:])
					if err != nil {
						c.Close()
						return
					}
					seen = append(seen, more[:n]...)
				}
				k.refused.Add(1)
				// GOAWAY: length 8, type 7, flags 0, stream 0; last stream 0,
				// PROTOCOL_ERROR (1).
				c.Write([]byte{0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
				c.Close()
				return
			}
			select {
			case k.conns <- &replayConn{Conn: c, first: first[:]}:
			case <-k.done:
				c.Close()
			}
		}()
	}
}

func (k *kestrelListener) Accept() (net.Conn, error) {
	select {
	case c := <-k.conns:
		return c, nil
	case <-k.done:
		return nil, net.ErrClosed
	}
}

// replayConn gives back the bytes already read before the rest.
type replayConn struct {
	net.Conn
	first []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// counted wraps l in a countingListener and returns its count.
func counted(l net.Listener) (net.Listener, *atomic.Int32) {
	n := new(atomic.Int32)
	return countingListener{l, n}, n
}

// slowAcceptListener accepts each connection a while after it arrived.
type slowAcceptListener struct {
	net.Listener
	delay time.Duration
}

func (l slowAcceptListener) Accept() (net.Conn, error) {
	time.Sleep(l.delay)
	return l.Listener.Accept()
}

// choiceServer is a server a client's protocol choice meets.
type choiceServer struct {
	name string
	// start serves path; it returns the count of connections accepted,
	// or nil where the test cannot count them.
	start func(tb testing.TB, path string) *atomic.Int32
	reply string     // SayHello("x")'s reply; "" when the call must fail
	code  codes.Code // the failure's code
}

func listenUnix(tb testing.TB, path string) net.Listener {
	l, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

func serveGRPCGo(tb testing.TB, l net.Listener) {
	s := grpc.NewServer()
	greetpb.RegisterGreeterServer(s, e2e.Greeter{})
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	tb.Cleanup(func() { s.Stop(); <-done })
}

var choiceServers = []choiceServer{
	{name: "grpc-go", reply: "Hello x", start: func(tb testing.TB, path string) *atomic.Int32 {
		l, n := counted(listenUnix(tb, path))
		serveGRPCGo(tb, l)
		return n
	}},
	{name: "kestrel-like", reply: "Hello x", start: func(tb testing.TB, path string) *atomic.Int32 {
		l, n := counted(listenUnix(tb, path))
		serveGRPCGo(tb, newKestrelListener(l))
		return n
	}},
	{name: "grpc-go slow to accept", reply: "Hello x", start: func(tb testing.TB, path string) *atomic.Int32 {
		l, n := counted(listenUnix(tb, path))
		serveGRPCGo(tb, slowAcceptListener{l, 5 * time.Millisecond})
		return n
	}},
	{name: "python grpcio", reply: "Hello x from python", start: func(tb testing.TB, path string) *atomic.Int32 {
		testutil.StartPythonServer(tb, filepath.Join("..", "..", "testdata", "interop"), "unix://"+path)
		return nil
	}},
	{name: "never answers", code: codes.DeadlineExceeded, start: func(tb testing.TB, path string) *atomic.Int32 {
		l := listenUnix(tb, path)
		var held []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
		tb.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range held {
				c.Close()
			}
		})
		return nil
	}},
	{name: "closes", code: codes.Unavailable, start: func(tb testing.TB, path string) *atomic.Int32 {
		l := listenUnix(tb, path)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return nil
	}},
}

// TestProtocolChoiceFirstCall: a new grpcipc client's first call, with a
// 50 ms deadline, against servers that are not grpcipc's: each answers
// (over HTTP/2) within the deadline, on the one connection the offer was
// made on, a server that never answers fails the call with
// DEADLINE_EXCEEDED at about its deadline, one that closes with
// UNAVAILABLE. Before version 2's offer (an HTTP/2 preface), the
// Kestrel-like server never answered version 1's first offer and every
// first call waited for a 2 s fallback timer, and every server that did
// answer cost a second connection.
func TestProtocolChoiceFirstCall(t *testing.T) {
	for _, cs := range choiceServers {
		t.Run(cs.name, func(t *testing.T) {
			path := filepath.Join(testutil.ShortTempDir(t), "c.sock")
			accepted := cs.start(t, path)
			conn := e2e.NewClient(t, "unix://"+path)
			call := func() (*greetpb.HelloReply, time.Duration, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				start := time.Now()
				r, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
				return r, time.Since(start), err
			}
			r, took, err := call()
			t.Logf("first call: %v, %v", took, err)
			if cs.reply != "" {
				if err != nil {
					t.Fatalf("first call with a 50 ms deadline: %v (after %v)", err, took)
				}
				if r.GetMessage() != cs.reply {
					t.Errorf("reply %q, want %q", r.GetMessage(), cs.reply)
				}
				if p := conn.Protocol(); p != grpcipc.ProtocolHTTP2 {
					t.Errorf("Protocol() = %q, want %q", p, grpcipc.ProtocolHTTP2)
				}
				// The choice is remembered: later calls, and their
				// connections, go straight to HTTP/2.
				if _, _, err := call(); err != nil {
					t.Fatalf("second call: %v", err)
				}
				if accepted != nil {
					if n := accepted.Load(); n != 1 {
						t.Errorf("the server accepted %d connections for two calls, want 1 (the offer's, on which HTTP/2 went on)", n)
					}
				}
				return
			}
			if status.Code(err) != cs.code {
				t.Fatalf("first call: %v, want %v", err, cs.code)
			}
			if took > time.Second {
				t.Errorf("the call failed after %v, not at about its deadline", took)
			}
		})
	}
}

// TestProtocolChoiceOffer: what a client sends first is HTTP/2's client
// preface and a SETTINGS frame holding one setting, 0xf1c0 = "GIP" and
// version 2, all in one write, and nothing more until the server answers.
func TestProtocolChoiceOffer(t *testing.T) {
	path := filepath.Join(testutil.ShortTempDir(t), "o.sock")
	l := listenUnix(t, path)
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var b [64]byte
		n, _ := io.ReadAtLeast(c, b[:], 24)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		m, _ := c.Read(b[n:])
		got <- b[:n+m]
	}()
	conn := e2e.NewClient(t, "unix://"+path)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
	offer := <-got
	want := []byte(http2ClientPreface +
		"\x00\x00\x06" + "\x04" + "\x00" + "\x00\x00\x00\x00" + // SETTINGS: 6 bytes, flags 0, stream 0
		"\xf1\xc0" + "GIP\x03") // setting 0xf1c0: "GIP", version 3
	if !bytes.Equal(offer, want) {
		t.Errorf("the client's offer is %q, want %q", offer, want)
	}
}

// BenchmarkFirstCall: a new client's first SayHello (NewClient, the call,
// Close) against servers that are not grpcipc's, grpcipc's client (which
// offers the fast path first) against plain grpc-go's (grpc.NewClient with
// grpcipc.Dial and grpcipc.ClientCredentials: the same socket and the
// same check of the server).
func BenchmarkFirstCall(b *testing.B) {
	for _, cs := range choiceServers {
		if cs.reply == "" && cs.code != codes.Unavailable {
			continue // a server that never answers: the deadline decides
		}
		b.Run(cs.name, func(b *testing.B) {
			path := filepath.Join(testutil.ShortTempDir(b), "b.sock")
			cs.start(b, path)
			endpoint := "unix://" + path
			creds, err := grpcipc.ClientCredentials(endpoint)
			if err != nil {
				b.Fatal(err)
			}
			clients := map[string]func() (grpc.ClientConnInterface, func(), error){
				"grpcipc": func() (grpc.ClientConnInterface, func(), error) {
					c, err := grpcipc.NewClient(endpoint)
					if err != nil {
						return nil, nil, err
					}
					return c, func() { c.Close() }, nil
				},
				"grpc-go": func() (grpc.ClientConnInterface, func(), error) {
					c, err := grpc.NewClient("passthrough:///"+endpoint,
						grpc.WithContextDialer(grpcipc.Dial), grpc.WithTransportCredentials(creds))
					if err != nil {
						return nil, nil, err
					}
					return c, func() { c.Close() }, nil
				},
			}
			for _, name := range []string{"grpc-go", "grpcipc"} {
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						c, closeIt, err := clients[name]()
						if err != nil {
							b.Fatal(err)
						}
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						r, err := greetpb.NewGreeterClient(c).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
						cancel()
						closeIt()
						if cs.reply != "" && (err != nil || r.GetMessage() != cs.reply) {
							b.Fatalf("SayHello: %v, %q", err, r.GetMessage())
						}
						if cs.reply == "" && status.Code(err) != cs.code {
							b.Fatalf("SayHello: %v, want %v", err, cs.code)
						}
					}
				})
			}
		})
	}
}

// TestVersion1ClientsServed: a client of version 1, which offered the fast
// path with grpcipc's own 8-byte preface (and, later, a PING in the same
// write), is answered with version 1 and served.
func TestVersion1ClientsServed(t *testing.T) {
	endpoint, _, _, _ := e2e.StartSlowServer(t)
	v1 := wire.AppendPreface(nil, 1)
	for name, offer := range map[string][]byte{
		"preface":          v1,
		"preface and PING": append(v1, e2e.RawFrame(0, wire.TypePing, 0, []byte("grpcipc\n"))...),
	} {
		t.Run(name, func(t *testing.T) {
			rf := e2e.DialFastWith(t, endpoint, offer, 1)
			req, _ := proto.Marshal(&greetpb.HelloRequest{Name: "v1"})
			rf.Send(t, e2e.RawCall(1), e2e.RawFrame(1, wire.TypeMessage, 0, req), e2e.RawFrame(1, wire.TypeHalfClose, 0, nil))
			for {
				h, p, err := rf.Next(5 * time.Second)
				if err != nil {
					t.Fatalf("reading the reply: %v (frames %v)", err, rf.Frames)
				}
				if h.Type == wire.TypeMessage {
					var r greetpb.HelloReply
					if err := proto.Unmarshal(p, &r); err != nil || r.GetMessage() != "Hello v1" {
						t.Fatalf("reply %q, %v", r.GetMessage(), err)
					}
				}
				if h.Type == wire.TypeTrailers {
					tr, err := wire.ParseTrailer(p)
					if err != nil || tr.Code != 0 {
						t.Fatalf("trailers %+v, %v", tr, err)
					}
					break
				}
			}
			if len(offer) > wire.PrefaceSize && !slices.Contains(rf.Frames, wire.TypePing) {
				t.Errorf("the offer's PING was not answered: frames %v", rf.Frames)
			}
		})
	}
}
