package files

// Attacks of a hostile server, spoken by hand, on a grpcipc client's
// descriptors: files it did not ask for, too many, where no FILES frame
// announces them, after the call's end.

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// serveByHand serves a hand-written fast-path server (version 3) on an
// abstract socket: answer gets each call's stream and the connection.
func serveByHand(t *testing.T, answer func(c *net.UnixConn, id uint32)) string {
	t.Helper()
	name := testutil.AbstractName(t)
	l, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				var pre [wire.OfferSize]byte
				if _, err := io.ReadFull(br, pre[:]); err != nil {
					return
				}
				if _, err := c.Write(wire.AppendPreface(nil, wire.Version)); err != nil {
					return
				}
				r := wire.NewReader(br, wire.DefaultMaxFrame)
				for {
					h, _, err := r.Next()
					if err != nil {
						return
					}
					if h.Type == wire.TypeHalfClose {
						answer(c.(*net.UnixConn), h.Stream)
					}
				}
			}()
		}
	}()
	return "unix-abstract:" + name
}

// TestHostileServerFiles: a server that sends descriptors where the
// protocol does not let it fails the call with a connection error that
// says why, and the client closes every descriptor it received; files
// after a call's end are closed; the client serves on.
func TestHostileServerFiles(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	send := func(c *net.UnixConn, frame []byte, n int) {
		fds := make([]int, n)
		for i := range fds {
			fds[i] = int(null.Fd())
		}
		c.WriteMsgUnix(frame, unix.UnixRights(fds...), nil)
	}
	files := func(id uint32, n int) []byte {
		return e2e.RawFrame(id, wire.TypeFiles, 0, wire.AppendFiles(nil, n))
	}
	reply := func(c *net.UnixConn, id uint32) {
		b, _ := proto.Marshal(&greetpb.HelloReply{Message: "hi"})
		c.Write(append(e2e.RawFrame(id, wire.TypeMessage, 0, b), e2e.RawFrame(id, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{}))...))
	}
	for _, tc := range []struct {
		name    string
		receive bool
		answer  func(c *net.UnixConn, id uint32)
		code    codes.Code // the call's; OK: it succeeds
		words   string
		files   int // the call receives
	}{
		{"unasked", false, func(c *net.UnixConn, id uint32) { send(c, files(id, 3), 3); reply(c, id) },
			codes.Unavailable, "the server sent files with a call that takes none", 0},
		{"253", true, func(c *net.UnixConn, id uint32) { send(c, files(id, 253), 253); reply(c, id) },
			codes.OK, "", 253},
		{"more than 253", true, func(c *net.UnixConn, id uint32) {
			send(c, files(id, 253), 253)
			send(c, files(id, 1), 1)
			reply(c, id)
		}, codes.Unavailable, "the server sent more than 253 files with a call", 0},
		{"on a PING", true, func(c *net.UnixConn, id uint32) {
			send(c, e2e.RawFrame(0, wire.TypePing, 0, []byte("12345678")), 253)
			reply(c, id)
		}, codes.Unavailable, "which no FILES frame began", 0},
		{"on a MESSAGE", true, func(c *net.UnixConn, id uint32) {
			b, _ := proto.Marshal(&greetpb.HelloReply{Message: "hi"})
			send(c, e2e.RawFrame(id, wire.TypeMessage, 0, b), 253)
			c.Write(e2e.RawFrame(id, wire.TypeTrailers, 0, wire.AppendTrailer(nil, &wire.Trailer{})))
		}, codes.Unavailable, "which no FILES frame began", 0},
		{"fewer than announced", true, func(c *net.UnixConn, id uint32) { send(c, files(id, 5), 1); reply(c, id) },
			codes.Unavailable, "announces 5 descriptors, and 1 arrived", 0},
		{"after the trailers", true, func(c *net.UnixConn, id uint32) { reply(c, id); send(c, files(id, 253), 253) },
			codes.OK, "", 0},
		{"on a stream never opened", true, func(c *net.UnixConn, id uint32) { send(c, files(id+100, 253), 253); reply(c, id) },
			codes.OK, "", 0},
		{"ten thousand", true, func(c *net.UnixConn, id uint32) {
			for range 40 {
				send(c, files(id, 253), 253)
			}
			reply(c, id)
		}, codes.Unavailable, "the server sent more than 253 files with a call", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint := serveByHand(t, tc.answer)
			base := openFiles(t)
			conn, err := grpcipc.NewClient(endpoint, grpcipc.WithExpectedServer(grpcipc.Anyone()))
			if err != nil {
				t.Fatal(err)
			}
			client := greetpb.NewGreeterClient(conn)
			for i := range 3 {
				var got []*os.File
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				opts := []grpc.CallOption{}
				if tc.receive {
					opts = append(opts, grpcipc.ReceiveFiles(&got))
				}
				_, err := client.SayHello(ctx, &greetpb.HelloRequest{Name: "x"}, opts...)
				cancel()
				for _, f := range got {
					f.Close()
				}
				st := status.Convert(err)
				if st.Code() != tc.code || !strings.Contains(st.Message(), tc.words) {
					t.Fatalf("call %d: %v, want %v saying %q", i, err, tc.code, tc.words)
				}
				if len(got) != tc.files && tc.code == codes.OK {
					t.Fatalf("call %d received %d files, want %d", i, len(got), tc.files)
				}
			}
			if conn.Protocol() != grpcipc.ProtocolFast {
				t.Errorf("the client speaks %v", conn.Protocol())
			}
			conn.Close()
			settleFiles(t, base)
		})
	}
}
