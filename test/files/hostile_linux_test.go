package files

// Attacks of a hostile client, another user's process (uid 65534) that
// the policy admits, speaking the fast path by hand: what it can make the
// server hold in descriptors, and what it leaves behind.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// blockingGreeter answers SayHello "block" only when the call ends,
// without taking its files; any other name at once.
type blockingGreeter struct {
	greetpb.UnimplementedGreeterServer
	entered chan struct{}
}

func (g *blockingGreeter) SayHello(ctx context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	if req.GetName() == "block" {
		if g.entered != nil {
			g.entered <- struct{}{}
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	for _, f := range grpcipc.TakeFiles(ctx) {
		f.Close()
	}
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

// nobodyPolicy admits uid 65534 and this user to SayHello.
const nobodyPolicy = `{"name": "files-for-nobody",
	"allow_rules": [{"name": "greet", "source": {"principals": ["uid:65534", "same-user"]}, "request": {"paths": ["/greet.Greeter/SayHello"]}}]}`

// hostileServer is a server for the attacks: the greeter g, files
// taken up to max a call, policy js, on an abstract socket; its log.
type hostileServer struct {
	endpoint string
	log      *e2e.SyncBuffer
	srv      *grpcipc.Server
}

func serveHostile(t *testing.T, max int, js string, g greetpb.GreeterServer, opts ...grpcipc.ServerOption) *hostileServer {
	t.Helper()
	p := e2e.MustPolicy(t, js)
	hs := &hostileServer{endpoint: "unix-abstract:" + testutil.AbstractName(t), log: &e2e.SyncBuffer{}}
	srv, err := grpcipc.NewServer(append([]grpcipc.ServerOption{grpcipc.WithMaxFilesPerCall(max), grpcipc.WithPolicy(p),
		grpcipc.WithLogger(slog.New(slog.NewTextHandler(hs.log, nil)))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	hs.srv = srv
	greetpb.RegisterGreeterServer(srv, g)
	l, err := grpcipc.Listen(context.Background(), hs.endpoint, grpcipc.WithPolicy(p))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return hs
}

// attacker runs the hostile-client helper as uid 65534 with args, and
// returns its first line of output (it prints one when it is ready, or
// done), the rest of its output, and what ends it: closes its stdin (it
// then exits) and waits for it, so that the test process holds nothing
// of it (pipes, a pidfd) when it counts its descriptors.
func attacker(t *testing.T, args ...string) (string, *bufio.Reader, func()) {
	t.Helper()
	testutil.RequireRoot(t)
	cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "hostile-client", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := testutil.Start(t, cmd)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("the attacker %v: %v", args, err)
	}
	end := func() {
		stdin.Close()
		io.Copy(io.Discard, out)
		cmd.Wait()
	}
	return strings.TrimSpace(line), out, end
}

// rawDial connects to addr and exchanges prefaces (version 3).
func rawDial(addr string) (*net.UnixConn, *wire.Reader, error) {
	c, err := net.Dial("unix", addr)
	if err != nil {
		return nil, nil, err
	}
	uc := c.(*net.UnixConn)
	if _, err := uc.Write(wire.AppendOffer(nil, wire.Version)); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(uc)
	var pre [wire.PrefaceSize]byte
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		return nil, nil, fmt.Errorf("preface: %w", err)
	}
	uc.SetReadDeadline(time.Time{})
	return uc, wire.NewReader(br, wire.DefaultMaxFrame), nil
}

// sendFDs writes b alone with n copies of fd attached.
func sendFDs(c *net.UnixConn, b []byte, fd, n int) error {
	fds := make([]int, n)
	for i := range fds {
		fds[i] = fd
	}
	_, _, err := c.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	return err
}

func hello(name string, stream uint32) []byte {
	b, _ := proto.Marshal(&greetpb.HelloRequest{Name: name})
	var out []byte
	out = append(out, e2e.RawCall(stream)...)
	out = append(out, e2e.RawFrame(stream, wire.TypeMessage, 0, b)...)
	return append(out, e2e.RawFrame(stream, wire.TypeHalfClose, 0, nil)...)
}

// outcomes reads frames until want trailers came, or the connection
// ends; it returns the codes of the trailers, and why the reading ended.
func outcomes(c *net.UnixConn, r *wire.Reader, want int, within time.Duration) (map[codes.Code]int, []string, error) {
	got := map[codes.Code]int{}
	var msgs []string
	c.SetReadDeadline(time.Now().Add(within))
	for n := 0; n < want; {
		h, p, err := r.Next()
		if err != nil {
			return got, msgs, err
		}
		switch h.Type {
		case wire.TypeTrailers:
			tr, err := wire.ParseTrailer(p)
			if err != nil {
				return got, msgs, err
			}
			got[codes.Code(tr.Code)]++
			if len(msgs) < 4 && tr.Code != 0 {
				msgs = append(msgs, tr.Message)
			}
			n++
		case wire.TypeGoAway:
			g, _ := wire.ParseGoAway(p)
			return got, msgs, fmt.Errorf("GOAWAY %q", g.Message)
		}
	}
	return got, msgs, nil
}

func init() {
	// hostile-client ENDPOINT MODE ARGS...: another user's attacks on a
	// server's descriptors; see the modes below.
	testutil.RegisterHelper("hostile-client", func(args []string) error {
		addr, err := e2e.UnixAddr(args[0])
		if err != nil {
			return err
		}
		null, err := os.Open(os.DevNull)
		if err != nil {
			return err
		}
		fd := int(null.Fd())
		num := func(i int) int { n, _ := strconv.Atoi(args[i]); return n }
		wait := func() { io.Copy(io.Discard, os.Stdin) }
		switch args[1] {
		case "hoard": // CONNS N: on each connection a FILES frame of N, its CALL never sent
			conns, n := num(2), num(3)
			var keep []*net.UnixConn
			for range conns {
				c, _, err := rawDial(addr)
				if err != nil {
					return err
				}
				if err := sendFDs(c, e2e.RawFrame(1, wire.TypeFiles, 0, wire.AppendFiles(nil, n)), fd, n); err != nil {
					return err
				}
				keep = append(keep, c)
			}
			// A PING answered on each: the server read the FILES frame.
			for _, c := range keep {
				c.Write(e2e.RawFrame(0, wire.TypePing, 0, []byte("12345678")))
			}
			for _, c := range keep {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				r := wire.NewReader(c, wire.DefaultMaxFrame)
				if h, _, err := r.Next(); err != nil || h.Type != wire.TypePing {
					return fmt.Errorf("no PING answered: %v %v", h.Type, err)
				}
			}
			fmt.Println("ready")
			wait()
		case "hold": // CONNS CALLS N: CALLS calls that block, with N files each, on each connection
			conns, calls, n := num(2), num(3), num(4)
			type conn struct {
				c *net.UnixConn
				r *wire.Reader
			}
			var cs []conn
			for range conns {
				c, r, err := rawDial(addr)
				if err != nil {
					return err
				}
				for i := range calls {
					id := uint32(2*i + 1)
					if err := sendFDs(c, e2e.RawFrame(id, wire.TypeFiles, 0, wire.AppendFiles(nil, n)), fd, n); err != nil {
						return err
					}
					if _, err := c.Write(hello("block", id)); err != nil {
						return err
					}
				}
				cs = append(cs, conn{c, r})
			}
			// The refused calls end at once; those let in block.
			total := map[codes.Code]int{}
			var msgs []string
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, m, _ := outcomes(c.c, c.r, calls, 3*time.Second)
					mu.Lock()
					for k, v := range got {
						total[k] += v
					}
					msgs = append(msgs, m...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			fmt.Printf("%d %d %q\n", total[codes.ResourceExhausted], len(total), strings.Join(msgs, "|"))
			wait()
		case "flood": // TOTAL: TOTAL descriptors in calls of 253 to a server that refuses them, then a call without
			total := num(2)
			c, r, err := rawDial(addr)
			if err != nil {
				return err
			}
			id, calls := uint32(1), 0
			for sent := 0; sent < total; sent += wire.MaxFilesPerFrame {
				n := min(wire.MaxFilesPerFrame, total-sent)
				if err := sendFDs(c, e2e.RawFrame(id, wire.TypeFiles, 0, wire.AppendFiles(nil, n)), fd, n); err != nil {
					return err
				}
				if _, err := c.Write(hello("x", id)); err != nil {
					return err
				}
				id += 2
				calls++
			}
			got, msgs, err := outcomes(c, r, calls, 20*time.Second)
			if err != nil {
				return err
			}
			if _, err := c.Write(hello("x", id)); err != nil {
				return err
			}
			last, _, err := outcomes(c, r, 1, 10*time.Second)
			if err != nil {
				return err
			}
			fmt.Printf("%d %d %d %q\n", calls, got[codes.FailedPrecondition], last[codes.OK], strings.Join(msgs[:min(1, len(msgs))], ""))
		case "stray": // HOW: descriptors where no FILES frame announces them; prints how the server ended the connection
			c, r, err := rawDial(addr)
			if err != nil {
				return err
			}
			switch args[2] {
			case "ping":
				err = sendFDs(c, e2e.RawFrame(0, wire.TypePing, 0, []byte("12345678")), fd, 253)
			case "message":
				c.Write(e2e.RawCall(1))
				b, _ := proto.Marshal(&greetpb.HelloRequest{Name: "block"})
				err = sendFDs(c, e2e.RawFrame(1, wire.TypeMessage, 0, b), fd, 253)
			case "half": // a FILES frame's first half with its descriptors, the rest never
				err = sendFDs(c, e2e.RawFrame(1, wire.TypeFiles, 0, wire.AppendFiles(nil, 253))[:5], fd, 253)
			case "unopened": // FILES for a call that never opens, then a CALL on another stream
				if err = sendFDs(c, e2e.RawFrame(5, wire.TypeFiles, 0, wire.AppendFiles(nil, 253)), fd, 253); err == nil {
					_, err = c.Write(hello("x", 1))
				}
			case "many": // three FILES frames' descriptors in a row, no frame read between
				for range 3 {
					// The server may have closed the connection after
					// the second: what it said is read below.
					if sendFDs(c, e2e.RawFrame(1, wire.TypeFiles, 0, wire.AppendFiles(nil, 253)), fd, 253) != nil {
						break
					}
				}
			}
			if err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			for {
				h, p, err := r.Next()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						fmt.Println("still open")
					} else {
						fmt.Println("closed without GOAWAY")
					}
					break
				}
				if h.Type == wire.TypeGoAway {
					g, _ := wire.ParseGoAway(p)
					fmt.Printf("GOAWAY %q\n", g.Message)
					break
				}
			}
		case "refused": // a caller the policy refuses: descriptors on its offer, FILES frames, a PING
			c, err := net.Dial("unix", addr)
			if err != nil {
				return err
			}
			uc := c.(*net.UnixConn)
			if err := sendFDs(uc, wire.AppendOffer(nil, wire.Version), fd, 253); err != nil {
				return err
			}
			var frames []string
			uc.SetDeadline(time.Now().Add(10 * time.Second))
			for i := range 20 {
				id := uint32(2*i + 1)
				if sendFDs(uc, e2e.RawFrame(id, wire.TypeFiles, 0, wire.AppendFiles(nil, 253)), fd, 253) != nil {
					break
				}
				if _, err := uc.Write(hello("x", id)); err != nil {
					break
				}
			}
			sendFDs(uc, e2e.RawFrame(0, wire.TypePing, 0, []byte("12345678")), fd, 253)
			b, _ := io.ReadAll(uc)
			if i := strings.Index(string(b), "denied"); i >= 0 {
				frames = append(frames, "denied")
			}
			fmt.Printf("closed after %d bytes %v\n", len(b), frames)
		case "die": // N: a FILES frame of N and its CALL's first bytes, then exit
			n := num(2)
			c, _, err := rawDial(addr)
			if err != nil {
				return err
			}
			if err := sendFDs(c, e2e.RawFrame(1, wire.TypeFiles, 0, wire.AppendFiles(nil, n)), fd, n); err != nil {
				return err
			}
			call := hello("block", 1)
			c.Write(call[:7])
			fmt.Println("sent")
			os.Exit(0)
		default:
			return fmt.Errorf("no mode %q", args[1])
		}
		return nil
	})
}

// helperFiles: the descriptors this process holds for a running helper
// (its stdin and stdout pipes, its pidfd).
const helperFiles = 3

// serverFiles counts this process's descriptors once they stop changing.
func serverFiles(t *testing.T) int {
	t.Helper()
	return e2e.Stable(func() int { return openFiles(t) })
}

// TestHoardedFilesBounded: a caller that sends FILES frames and never the
// CALLs they announce, on many connections, makes the server hold no more
// descriptors than the documented bounds (4n a connection, 16n a caller),
// and none on a server that takes no files; they are closed when it
// leaves.
func TestHoardedFilesBounded(t *testing.T) {
	for _, tc := range []struct {
		max   int
		bound int // descriptors the server may hold beyond the connections
	}{
		{0, 0},
		{2, 16 * 2},
		{253, 16 * 253},
	} {
		t.Run(fmt.Sprintf("max-%d", tc.max), func(t *testing.T) {
			hs := serveHostile(t, tc.max, nobodyPolicy, &blockingGreeter{})
			good := greetpb.NewGreeterClient(e2e.NewClient(t, hs.endpoint))
			if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "first"}); err != nil {
				t.Fatal(err)
			}
			base := serverFiles(t)
			const conns = 40
			line, _, end := attacker(t, hs.endpoint, "hoard", strconv.Itoa(conns), "253")
			if line != "ready" {
				t.Fatalf("the attacker: %q", line)
			}
			// Refused descriptors are closed off the reading goroutine: the
			// count once it stops changing.
			held := serverFiles(t) - base - conns - helperFiles
			t.Logf("the server holds %d descriptors beyond its %d connections", held, conns)
			// A caller that plays by the rules is served meanwhile.
			if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "meanwhile"}); err != nil {
				t.Errorf("a good caller: %v", err)
			}
			if held > tc.bound {
				t.Errorf("the server holds %d descriptors for the calls of one caller that never came; at most %d may be held", held, tc.bound)
			}
			end()
			settleFiles(t, base)
		})
	}
}

// fdNames lists what this process's descriptors are, for a message.
func fdNames() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var names []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		names = append(names, e.Name()+"="+l)
	}
	return strings.Join(names, " ")
}

// goodClient is a client of this user, which has made one call.
func goodClient(t *testing.T, endpoint string) greetpb.GreeterClient {
	t.Helper()
	good := greetpb.NewGreeterClient(e2e.NewClient(t, endpoint))
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	return good
}

// TestHeldFilesBounded: a caller whose calls carry files to handlers
// that block without taking them, on several connections, has the calls
// over the bounds (4n a connection, 16n on all its connections) refused
// with ResourceExhausted, which names the bounds; the server holds no
// more than 16n of its descriptors, serves others meanwhile, and closes
// them all when the caller leaves.
func TestHeldFilesBounded(t *testing.T) {
	const max, conns, calls = 2, 6, 10
	g := &blockingGreeter{entered: make(chan struct{}, conns*calls)}
	hs := serveHostile(t, max, nobodyPolicy, g)
	good := goodClient(t, hs.endpoint)
	base := serverFiles(t)
	line, _, end := attacker(t, hs.endpoint, "hold", strconv.Itoa(conns), strconv.Itoa(calls), strconv.Itoa(max))
	var exhausted, kinds int
	var msgs string
	if _, err := fmt.Sscanf(line, "%d %d %q", &exhausted, &kinds, &msgs); err != nil {
		t.Fatalf("the attacker printed %q: %v", line, err)
	}
	admitted := filesPerCaller * max / max // calls of max files each
	for range admitted {
		<-g.entered
	}
	held := serverFiles(t) - base - conns - helperFiles
	t.Logf("%d calls refused with ResourceExhausted; the server holds %d of the caller's descriptors; %s", exhausted, held, msgs[:min(len(msgs), 400)])
	if want := conns*calls - admitted; exhausted != want || kinds != 1 {
		t.Errorf("%d calls refused with ResourceExhausted (%d codes in all), want %d", exhausted, kinds, want)
	}
	// Every connection has calls refused, some for its own bound, some
	// for the caller's: the message says which is full.
	if !strings.Contains(msgs, "it carries 2 files, and this caller's calls in flight hold") ||
		!strings.Contains(msgs, "at most 8 on a connection and 32 on all") ||
		!(strings.Contains(msgs, "on this connection and 32 on all its connections already") || strings.Contains(msgs, "hold 8 on this connection")) {
		t.Errorf("the refusals say %q, not which bound is full", msgs)
	}
	if held > filesPerCaller*max {
		t.Errorf("the server holds %d of the caller's descriptors, more than %d", held, filesPerCaller*max)
	}
	select {
	case <-g.entered:
		t.Error("more handlers ran than the bounds let in")
	default:
	}
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "meanwhile"}); err != nil {
		t.Errorf("a good caller: %v", err)
	}
	end()
	settleFiles(t, base)
}

// The bounds, in multiples of WithMaxFilesPerCall (docs/protocol.md).
const filesPerConn, filesPerCaller = 4, 16

// TestFloodOfFiles: 10,000 descriptors sent with calls to a server that
// takes none are refused call by call, with FailedPrecondition naming
// why; the connection goes on, a call without files succeeds on it, and
// nothing is left open.
func TestFloodOfFiles(t *testing.T) {
	hs := serveHostile(t, 0, nobodyPolicy, &blockingGreeter{})
	good := goodClient(t, hs.endpoint)
	base := serverFiles(t)
	line, _, end := attacker(t, hs.endpoint, "flood", "10000")
	var calls, refused, ok int
	var msg string
	if _, err := fmt.Sscanf(line, "%d %d %d %q", &calls, &refused, &ok, &msg); err != nil {
		t.Fatalf("the attacker printed %q: %v", line, err)
	}
	if refused != calls || ok != 1 || !strings.Contains(msg, "carries 253 files, and this server takes none") {
		t.Errorf("%d of %d calls refused (%q), the last call without files ok: %d", refused, calls, msg, ok)
	}
	if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "meanwhile"}); err != nil {
		t.Errorf("a good caller: %v", err)
	}
	end()
	settleFiles(t, base)
}

// TestStrayFilesFromAnotherUser: descriptors that another user's process
// attaches where no FILES frame announces them (a PING, a MESSAGE), for
// a call it never opens, several FILES frames' worth at once, or with
// half a frame whose rest never comes, end its connection, with a
// GOAWAY that says why when the frame was whole; the server closes
// every descriptor and serves others meanwhile.
func TestStrayFilesFromAnotherUser(t *testing.T) {
	for _, tc := range []struct{ how, want string }{
		{"ping", "which no FILES frame began"},
		{"message", "which no FILES frame began"},
		{"unopened", "a FILES frame for stream 5, then a CALL on stream 1"},
		{"many", "not the next call's"},
		{"half", "closed without GOAWAY"},
	} {
		t.Run(tc.how, func(t *testing.T) {
			hs := serveHostile(t, 253, nobodyPolicy, &blockingGreeter{}, grpcipc.WithHandshakeTimeout(time.Second))
			good := goodClient(t, hs.endpoint)
			base := serverFiles(t)
			line, _, end := attacker(t, hs.endpoint, "stray", tc.how)
			if !strings.Contains(line, tc.want) {
				t.Errorf("the attacker saw %s, want %q", line, tc.want)
			}
			if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "meanwhile"}); err != nil {
				t.Errorf("a good caller: %v", err)
			}
			end()
			settleFiles(t, base)
		})
	}
}

// TestCallerDiesHoldingFiles: a caller that sends a FILES frame of 253
// and its CALL's first bytes, then exits, leaves nothing open.
func TestCallerDiesHoldingFiles(t *testing.T) {
	for _, max := range []int{0, 253} {
		t.Run(strconv.Itoa(max), func(t *testing.T) {
			hs := serveHostile(t, max, nobodyPolicy, &blockingGreeter{}, grpcipc.WithHandshakeTimeout(time.Second))
			good := goodClient(t, hs.endpoint)
			base := serverFiles(t)
			for range 5 {
				line, _, end := attacker(t, hs.endpoint, "die", "253")
				if line != "sent" {
					t.Fatalf("the attacker: %q", line)
				}
				end()
			}
			if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "meanwhile"}); err != nil {
				t.Errorf("a good caller: %v", err)
			}
			settleFiles(t, base)
		})
	}
}

// TestRefusedCallerFiles: descriptors that a caller the policy refuses
// attaches to its offer, to FILES frames and to a PING are all closed;
// the server serves others meanwhile.
func TestRefusedCallerFiles(t *testing.T) {
	for _, tc := range []struct{ name, policy string }{
		{"not admitted", `{"name": "self-only", "allow_rules": [{"name": "self", "source": {"principals": ["same-user"]}}]}`},
		{"admitted to no method", `{"name": "nobody-to-nothing",
			"allow_rules": [{"name": "self", "source": {"principals": ["same-user"]}}, {"name": "nothing", "source": {"principals": ["uid:65534"]}, "request": {"paths": ["/no.Such/Method"]}}]}`},
		{"denied", `{"name": "deny-nobody", "deny_rules": [{"name": "not-nobody", "source": {"principals": ["uid:65534"]}}],
			"allow_rules": [{"name": "all", "source": {"principals": ["*"]}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := serveHostile(t, 253, tc.policy, &blockingGreeter{})
			good := goodClient(t, hs.endpoint)
			base := serverFiles(t)
			for range 3 {
				line, _, end := attacker(t, hs.endpoint, "refused")
				t.Logf("the refused caller: %s", line)
				if !strings.HasPrefix(line, "closed") {
					t.Errorf("the refused caller: %q", line)
				}
				end()
			}
			if _, err := good.SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "meanwhile"}); err != nil {
				t.Errorf("a good caller: %v", err)
			}
			settleFiles(t, base)
		})
	}
}
