package budget

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func init() {
	// h2-flood ENDPOINT N: open an HTTP/2 call of the Sink and send it N
	// one-byte DATA frames, print "sent N", and hold the connection until
	// standard input closes.
	testutil.RegisterHelper("h2-flood", func(args []string) error {
		addr, err := e2e.UnixAddr(args[0])
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		c, err := net.Dial("unix", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		go io.Copy(io.Discard, c) // the server's answers
		c.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(c, nil)
		fr.WriteSettings()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", e2e.SinkMethod}, {":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		one := []byte{0}
		sent := 0
		for range n {
			if err := fr.WriteData(1, false, one); err != nil {
				break
			}
			sent++
		}
		fmt.Println("sent", sent)
		io.Copy(io.Discard, os.Stdin)
		return nil
	})
}

// HTTP/2 has no budget of grpcipc's own: grpc-go's windows bound it. A
// flood of one-byte DATA frames (each a message part to grpc-go, 4 MiB of
// them fit the stream's window) from another user stays within a
// connection's fast-path budget all the same, and the server's own user
// is served meanwhile.
func TestHTTP2TinyFramesBounded(t *testing.T) {
	testutil.RequireRoot(t)
	p := e2e.MustPolicy(t, `{"name": "sink-for-nobody",
		"allow_rules": [{"name": "sink", "source": {"principals": ["uid:65534"]}, "request": {"paths": ["/grpcipc.test.Sink/*"]}},
		                {"name": "self", "source": {"principals": ["same-user"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	e2e.ServeGuardedKind(t, e2e.SinkServerKind, endpoint, nil, grpcipc.WithPolicy(p))
	g := e2e.KeepCalling(greetpb.NewGreeterClient(e2e.NewClient(t, endpoint)))
	w := e2e.WatchHeap()
	cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "h2-flood", endpoint, "1000000")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := testutil.Start(t, cmd)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("the attacker: %v", err)
	}
	time.Sleep(time.Second)
	grown := w.Grown()
	stdin.Close()
	cmd.Wait()
	g.Check(t)
	t.Logf("uid 65534 %s one-byte DATA frames: the server's heap grew by %.1f MiB at most", strings.TrimSpace(line), float64(grown)/MiB)
	if limit := int64(grpcipc.DefaultConnMemoryBudget + budgetOverhead); grown > limit {
		t.Errorf("the server's heap grew by %.1f MiB; want at most %.1f MiB", float64(grown)/MiB, float64(limit)/MiB)
	}
}
