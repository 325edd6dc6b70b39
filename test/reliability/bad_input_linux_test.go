package reliability

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// closedByServer waits for the server to close c.
func closedByServer(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the server did not close the connection within %v: %v", within, err)
	}
}

func TestBadInput(t *testing.T) {
	endpoint, _, _, log := e2e.StartSlowServer(t, grpcipc.WithHandshakeTimeout(500*time.Millisecond))
	good := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint))
	stillServes := func() {
		t.Helper()
		if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "ok"}); err != nil {
			t.Fatalf("the server stopped serving others: %v", err)
		}
	}
	frame := func(length int, typ byte) []byte {
		return []byte{byte(length >> 16), byte(length >> 8), byte(length), typ, 0, 0, 0, 0, 1}
	}
	for _, tc := range []struct {
		name, log string
		send      []byte
	}{
		// Neither HTTP/2 nor grpcipc's fast path (whose magic also starts
		// with G).
		{"garbage", "its first bytes are neither HTTP/2's preface nor grpcipc's", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage")},
		{"truncated preface", "the HTTP/2 preface stopped after 16 bytes", []byte("PRI * HTTP/2.0\r\n")},
		{"oversized frame", "", append(append([]byte(http2PrefaceForTest), frame(0, 4)...), frame(1<<24-1, 0)...)},
		{"silent", "nothing received before the handshake timeout", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e2e.RawConn(t, endpoint)
			if tc.send != nil {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name == "truncated preface" {
				c.(*net.UnixConn).CloseWrite()
			}
			closedByServer(t, c, 5*time.Second)
			stillServes()
			if tc.log != "" {
				if got := e2e.SettleLog(log, tc.log); !strings.Contains(got, tc.log) {
					t.Errorf("the server did not log %q:\n%s", tc.log, got)
				}
			}
		})
	}
	if n := strings.Count(log.String(), "connection dropped"); n != 3 {
		t.Errorf("%d log lines for 3 dropped connections:\n%s", n, log.String())
	}
}

const http2PrefaceForTest = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func TestOversizedMessage(t *testing.T) {
	endpoint, _, _, _ := e2e.StartSlowServer(t)
	client := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint))
	_, err := client.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: strings.Repeat("x", 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 5 MiB request: %v; want ResourceExhausted", err)
	}
	if _, err := client.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "small"}); err != nil {
		t.Errorf("after the oversized message: %v", err)
	}
}
