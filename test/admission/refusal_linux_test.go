package admission

// One refusal for every protocol (issue 20, items 3 and 4): a caller the
// policy does not let call a method gets the same PermissionDenied over
// HTTP/2 as over the fast path, whether the method exists or not and
// whatever bytes it sends, and none of them is decoded; a refused grpcipc
// client hears its refusal on the fast path, on one connection.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// probeResult is what the probe helper prints per call.
type probeResult struct {
	PID      int    `json:"pid"`
	Protocol string `json:"protocol"` // "fast" or "http2"
	Method   string `json:"method"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	// Fast path only: TRAILERS received, the GOAWAY's last stream (-1:
	// none), and how long the server kept the connection open.
	Trailers int           `json:"trailers,omitempty"`
	GoAway   int64         `json:"goaway,omitempty"`
	Open     time.Duration `json:"open,omitempty"`
}

// rawCodec sends a request's bytes as they are, undecodable ones
// included, and keeps a reply's.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func init() {
	// probe ENDPOINT PROTOCOLS BODY METHOD...: calls each method once with
	// BODY ("ff": sixteen 0xff bytes, which no protobuf message decodes;
	// "empty": no bytes) over each protocol of PROTOCOLS ("fast",
	// "http2", "fast,http2"): the fast path spoken by hand, HTTP/2 through
	// a plain grpc-go client with a codec that sends bytes as they are.
	// Prints a JSON list of probeResult. PROTOCOLS "fastflood" opens one
	// fast-path connection and sends 20 CALLs of the first method on it,
	// "fastidle" one CALL; both read until the server closes.
	testutil.RegisterHelper("probe", func(args []string) error {
		if len(args) < 4 {
			return fmt.Errorf("want ENDPOINT PROTOCOLS BODY METHOD...")
		}
		addr, err := e2e.UnixAddr(args[0])
		if err != nil {
			return err
		}
		var body []byte
		if args[2] == "ff" {
			body = []byte(strings.Repeat("\xff", 16))
		}
		var out []probeResult
		for _, proto := range strings.Split(args[1], ",") {
			for _, m := range args[3:] {
				var r probeResult
				switch proto {
				case "fast":
					r, err = probeFast(addr, m, body, 1, false)
				case "fastidle":
					r, err = probeFast(addr, m, body, 1, true)
				case "fastflood":
					r, err = probeFast(addr, m, body, 20, true)
				case "http2":
					r, err = probeHTTP2(addr, m, body)
				default:
					return fmt.Errorf("no protocol %q", proto)
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", proto, m, err)
				}
				r.PID, r.Protocol, r.Method = os.Getpid(), proto, m
				out = append(out, r)
				if strings.HasPrefix(proto, "fast") && proto != "fast" {
					break
				}
			}
		}
		return json.NewEncoder(os.Stdout).Encode(out)
	})
}

// probeFast opens a fast-path connection, makes calls calls of method
// with body on it and reads what the server answers until it has answered
// the first, or, with untilClosed, until it closes the connection.
func probeFast(addr, method string, body []byte, calls int, untilClosed bool) (probeResult, error) {
	r := probeResult{GoAway: -1}
	c, err := net.Dial("unix", addr)
	if err != nil {
		return r, err
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(10 * time.Second))
	if _, err := c.Write(wire.AppendPreface(nil, wire.Version)); err != nil {
		return r, err
	}
	br := bufio.NewReader(c)
	var pre [wire.PrefaceSize]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		return r, fmt.Errorf("reading the server's preface: %w", err)
	}
	if _, err := wire.ParsePreface(pre[:]); err != nil {
		return r, err
	}
	var frames []byte
	for i := range calls {
		id := uint32(2*i + 1)
		frames = append(frames, rawFrameTo(id, wire.TypeCall, wire.AppendCall(nil, &wire.Call{Method: method}))...)
		frames = append(frames, rawFrameTo(id, wire.TypeMessage, body)...)
		frames = append(frames, rawFrameTo(id, wire.TypeHalfClose, nil)...)
	}
	if _, err := c.Write(frames); err != nil {
		return r, err
	}
	fr := wire.NewReader(br, wire.DefaultMaxFrame)
	for {
		h, p, err := fr.Next()
		if err != nil {
			if r.Trailers == 0 {
				return r, fmt.Errorf("no TRAILERS: %w", err)
			}
			r.Open = time.Since(start)
			return r, nil
		}
		switch h.Type {
		case wire.TypeTrailers:
			t, err := wire.ParseTrailer(p)
			if err != nil {
				return r, err
			}
			r.Trailers++
			st := status.New(codes.Code(t.Code), t.Message)
			r.Code, r.Message = st.Code().String(), st.Message()
			if !untilClosed {
				return r, nil
			}
		case wire.TypeGoAway:
			g, err := wire.ParseGoAway(p)
			if err != nil {
				return r, err
			}
			r.GoAway = int64(g.LastStream)
		}
	}
}

func rawFrameTo(stream uint32, typ wire.Type, payload []byte) []byte {
	return append(wire.AppendHeader(nil, wire.Header{Length: uint32(len(payload)), Stream: stream, Type: typ}), payload...)
}

// probeHTTP2 calls method with body through a plain grpc-go client.
func probeHTTP2(addr, method string, body []byte) (probeResult, error) {
	var r probeResult
	cc, err := grpc.NewClient("passthrough:///probe",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		return r, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var reply []byte
	err = cc.Invoke(ctx, method, &body, &reply, grpc.ForceCodec(rawCodec{}))
	st := status.Convert(err)
	r.Code, r.Message = st.Code().String(), st.Message()
	return r, nil
}

// probe runs the probe helper as uid 65534.
func probe(t *testing.T, endpoint, protocols, body string, methods ...string) []probeResult {
	t.Helper()
	cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "probe", append([]string{endpoint, protocols, body}, methods...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe helper as uid 65534: %v", err)
	}
	var rs []probeResult
	if err := json.Unmarshal(out, &rs); err != nil {
		t.Fatalf("probe helper printed %q: %v", out, err)
	}
	return rs
}

// callCounter counts what interceptors and stats handlers see of calls.
type callCounter struct {
	intercepted, begun atomic.Int64
}

func (c *callCounter) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	c.intercepted.Add(1)
	return h(ctx, req)
}

func (c *callCounter) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	c.intercepted.Add(1)
	return h(srv, ss)
}

func (c *callCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *callCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		c.begun.Add(1)
	}
}
func (c *callCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *callCounter) HandleConn(context.Context, stats.ConnStats)                       {}

// A caller denied a method learns nothing of which methods exist, and its
// request is not decoded: undecodable bytes to a method that exists and to
// ones that do not get the same PermissionDenied, on both protocols, and
// no handler, interceptor or stats handler hears of the calls. The same
// caller's allowed method works on both, through the interceptors and the
// stats handler.
func TestDeniedMethodsLookAlike(t *testing.T) {
	testutil.RequireRoot(t)
	p := e2e.MustPolicy(t, `{"name": "hello-only", "allow_rules": [
		{"name": "hello", "source": {"principals": ["uid:65534"]}, "request": {"paths": ["/greet.Greeter/SayHello"]}}]}`)
	denied := []string{
		"/grpcipc.v1.Identity/WhoAmI",  // exists: its request would not decode
		"/grpcipc.v1.Identity/Missing", // a service that exists, a method that does not
		"/no.such.Service/Method",      // neither exists
	}
	for _, k := range e2e.ServerKinds {
		t.Run(k.Name, func(t *testing.T) {
			protocols := "fast,http2"
			if k.Name == e2e.ServerOptionsKind.Name {
				protocols = "http2" // a grpc.Server speaks no fast path
			}
			var cnt callCounter
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			gs := e2e.ServeGuardedKind(t, k, endpoint, nil, grpcipc.WithPolicy(p),
				grpcipc.WithUnaryInterceptor(cnt.unary), grpcipc.WithStreamInterceptor(cnt.stream), grpcipc.WithStatsHandler(&cnt))

			rs := probe(t, endpoint, protocols, "ff", denied...)
			if want := strings.Count(protocols, ",") + 1; len(rs) != want*len(denied) {
				t.Fatalf("%d results, want %d", len(rs), want*len(denied))
			}
			var first string
			for _, r := range rs {
				if r.Code != "PermissionDenied" {
					t.Errorf("%s %s: %s %q; want PermissionDenied", r.Protocol, r.Method, r.Code, r.Message)
					continue
				}
				want := fmt.Sprintf("grpcipc: permission denied: pid %d uid 65534 (nobody) gid 65534 may not call %s", r.PID, r.Method)
				if r.Message != want {
					t.Errorf("%s %s: message %q, want %q", r.Protocol, r.Method, r.Message, want)
				}
				// The same words for every method, on every protocol.
				generic := strings.ReplaceAll(r.Message, r.Method, "METHOD")
				if first == "" {
					first = generic
				} else if generic != first {
					t.Errorf("%s %s: %q differs from %q", r.Protocol, r.Method, generic, first)
				}
			}
			if n := gs.Srv.Calls.Load(); n != 0 {
				t.Errorf("%d handlers ran for denied calls", n)
			}
			if n := cnt.intercepted.Load(); n != 0 {
				t.Errorf("interceptors saw %d denied calls", n)
			}
			if n := cnt.begun.Load(); n != 0 {
				t.Errorf("stats handlers saw %d denied calls begin", n)
			}
			if log := gs.Log.String(); strings.Count(log, "call refused") != len(rs) {
				t.Errorf("want %d lines \"call refused\":\n%s", len(rs), log)
			}

			// The allowed method, with a request that decodes (no bytes: an
			// empty HelloRequest), goes through everything as before.
			ok := probe(t, endpoint, protocols, "empty", "/greet.Greeter/SayHello")
			for _, r := range ok {
				if r.Code != "OK" {
					t.Errorf("%s SayHello: %s %q; want OK", r.Protocol, r.Code, r.Message)
				}
			}
			if got := gs.Srv.Calls.Load(); got != int64(len(ok)) {
				t.Errorf("%d handlers ran for %d allowed calls", got, len(ok))
			}
			if got := cnt.intercepted.Load(); got != int64(len(ok)) {
				t.Errorf("interceptors saw %d of %d allowed calls", got, len(ok))
			}
			if got := cnt.begun.Load(); got != int64(len(ok)) {
				t.Errorf("stats handlers saw %d of %d allowed calls begin", got, len(ok))
			}
		})
	}
}

// A refused grpcipc client (its caller is admitted to no method) hears its
// refusal on the fast path, on the one connection it made: the refusal
// is logged once, and its error is the one it got over HTTP/2 before.
// Plain gRPC clients still hear it over HTTP/2.
func TestRefusedFastClientConnectsOnce(t *testing.T) {
	testutil.RequireRoot(t)
	for _, k := range e2e.ServerKinds {
		t.Run(k.Name, func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			gs := e2e.ServeGuardedKind(t, k, endpoint, nil) // same-user: uid 65534 is refused
			refusal := func(pid int) string {
				return fmt.Sprintf("grpcipc: permission denied: pid %d uid 65534 (nobody) gid 65534 is not admitted by this server's policy", pid)
			}

			res := e2e.Call(t, e2e.Nobody, endpoint, "SayHello")
			if res.Code != "PermissionDenied" || res.Message != refusal(res.PID) {
				t.Errorf("grpcipc client: %s %q; want PermissionDenied %q", res.Code, res.Message, refusal(res.PID))
			}
			if res.Protocol != grpcipc.ProtocolFast {
				t.Errorf("the refused grpcipc client spoke %q; want %q", res.Protocol, grpcipc.ProtocolFast)
			}
			if n := strings.Count(gs.Log.String(), "connection refused"); n != 1 {
				t.Errorf("the refused grpcipc client's call: %d lines \"connection refused\", want 1 (one connection):\n%s", n, gs.Log.String())
			}

			// A plain grpc-go client hears the same over HTTP/2.
			rs := probe(t, endpoint, "http2", "empty", "/greet.Greeter/SayHello")
			if r := rs[0]; r.Code != "PermissionDenied" || r.Message != refusal(r.PID) {
				t.Errorf("plain grpc-go client: %s %q; want PermissionDenied %q", r.Code, r.Message, refusal(r.PID))
			}
			if n := strings.Count(gs.Log.String(), "connection refused"); n != 2 {
				t.Errorf("after the grpc-go client's call: %d lines \"connection refused\", want 2:\n%s", n, gs.Log.String())
			}
			if n := gs.Srv.Calls.Load(); n != 0 {
				t.Errorf("%d handlers ran for refused callers", n)
			}
		})
	}
}

// A refused fast-path connection is bounded as the HTTP/2 refusal is: it
// answers a few calls, says GOAWAY, and is closed by the refusal deadline
// (1 s after it was accepted), whatever its client sends.
func TestRefusedFastConnectionBounded(t *testing.T) {
	testutil.RequireRoot(t)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	gs := e2e.ServeGuarded(t, endpoint)
	rs := probe(t, endpoint, "fastflood", "ff", "/greet.Greeter/SayHello")
	r := rs[0]
	const answered = 16 // fastpath.refusedCalls
	if r.Trailers != answered || r.GoAway != 2*answered-1 {
		t.Errorf("20 calls on a refused connection: %d answered, GOAWAY after stream %d; want %d and %d", r.Trailers, r.GoAway, answered, 2*answered-1)
	}
	if r.Code != "PermissionDenied" || r.Message != fmt.Sprintf("grpcipc: permission denied: pid %d uid 65534 (nobody) gid 65534 is not admitted by this server's policy", r.PID) {
		t.Errorf("refused call: %s %q", r.Code, r.Message)
	}
	// A client that makes one call and stays: closed by the deadline,
	// after a GOAWAY that started no call beyond the one answered.
	idle := probe(t, endpoint, "fastidle", "ff", "/greet.Greeter/SayHello")[0]
	if idle.Trailers != 1 || idle.GoAway != 1 || idle.Open > 1200*time.Millisecond {
		t.Errorf("one call, then idle: %d answered, GOAWAY after stream %d, closed after %v; want 1, 1, about 1 s", idle.Trailers, idle.GoAway, idle.Open)
	}
	if n := strings.Count(gs.Log.String(), "connection refused"); n != 2 {
		t.Errorf("%d lines \"connection refused\", want 2:\n%s", n, gs.Log.String())
	}
}
