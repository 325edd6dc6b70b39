package fastpath

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // registers "gzip" for grpc.UseCompressor
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The fast path (docs/protocol.md) must be invisible: what handlers,
// interceptors, stats handlers and callers see on it is what they see on
// HTTP/2, grpc-go's own transport, on the same grpcipc.Server. Every check
// below runs over both: a default client (which must speak the fast path)
// and a WithHTTP2 client.

// TestFastPathMatchesHTTP2: each check holds, alike, for a client on the
// fast path and for one on HTTP/2, against the same grpcipc.Server.
func TestFastPathMatchesHTTP2(t *testing.T) {
	fpNoLeaks(t)
	endpoint := testutil.Endpoint(t)
	ep, err := grpcipc.ParseEndpoint(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	env := fpServe(t, endpoint, newFPService())
	svc := env.svc
	conns := map[string]*grpcipc.ClientConn{}
	for _, p := range fpProtocols {
		conns[p.name] = fpConnect(t, endpoint, p)
	}
	const service = "/grpc.testing.TestService/"

	checks := []struct {
		name string
		f    func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient)
	}{
		{"unary server interceptors run in order", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			var tr metadata.MD
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Trailer(&tr)); err != nil {
				t.Fatal(err)
			}
			if got := svc.mustSee(t, id).trace; !slices.Equal(got, []string{"u1", "u2"}) {
				t.Errorf("interceptors before the handler: %v, want [u1 u2]", got)
			}
			if got := tr.Get("x-after"); !slices.Equal(got, []string{"u2", "u1"}) {
				t.Errorf("interceptors after the handler: %v, want [u2 u1]", got)
			}
		}},
		{"stream server interceptors run in order", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := recvAll(stream); err != nil {
				t.Fatal(err)
			}
			if got := svc.mustSee(t, id).trace; !slices.Equal(got, []string{"s1", "s2"}) {
				t.Errorf("interceptors before the handler: %v, want [s1 s2]", got)
			}
			if got := stream.Trailer().Get("x-after"); !slices.Equal(got, []string{"s2", "s1"}) {
				t.Errorf("interceptors after the handler: %v, want [s2 s1]", got)
			}
		}},
		{"peer and AuthInfo in the handler", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			x := svc.mustSee(t, id)
			if !x.peerOK || x.peer.Addr == nil {
				t.Fatalf("peer.FromContext: %v, %v", x.peer, x.peerOK)
			}
			if x.peer.Addr.Network() != "unix" && runtime.GOOS != "windows" {
				t.Errorf("peer address %v on network %q, want unix", x.peer.Addr, x.peer.Addr.Network())
			}
			if !x.aiOK {
				t.Fatalf("AuthInfoFromContext: none; the peer's AuthInfo is %T", x.peer.AuthInfo)
			}
			if x.ai.Transport != ep.Transport {
				t.Errorf("AuthInfo.Transport %v, want %v", x.ai.Transport, ep.Transport)
			}
			if x.ai.SecurityLevel != credentials.PrivacyAndIntegrity {
				t.Errorf("security level %v, want PrivacyAndIntegrity", x.ai.SecurityLevel)
			}
			checkOurIdentity(t, "the caller in the handler", x.ai.Peer)
		}},
		{"header and trailer metadata, unary", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "headers")
			var h, tr metadata.MD
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 3}, grpc.Header(&h), grpc.Trailer(&tr)); err != nil {
				t.Fatal(err)
			}
			checkHeaderTrailer(t, h, tr)
		}},
		{"header and trailer metadata, stream", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "headers")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 2}}})
			if err != nil {
				t.Fatal(err)
			}
			h, err := stream.Header()
			if err != nil {
				t.Fatalf("Header: %v", err)
			}
			sizes, err := recvAll(stream)
			if err != nil || !slices.Equal(sizes, []int{1, 2}) {
				t.Fatalf("messages %v, %v; want [1 2]", sizes, err)
			}
			checkHeaderTrailer(t, h, stream.Trailer())
		}},
		{"incoming metadata, with a -bin key", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			raw := "\x00\x01\x7f\x80\xfe\xff" + "é"
			ctx = metadata.AppendToOutgoingContext(ctx, "x-one", "1", "x-multi", "a", "x-multi", "b", "x-raw-bin", raw)
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			md := svc.mustSee(t, id).md
			for k, want := range map[string][]string{"x-one": {"1"}, "x-multi": {"a", "b"}, "x-raw-bin": {raw}, "x-call-id": {id}} {
				if got := md.Get(k); !slices.Equal(got, want) {
					t.Errorf("metadata %q: %q, want %q", k, got, want)
				}
			}
			var keys []string
			for k := range md {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Logf("incoming metadata keys on %s: %v", p.name, keys)
		}},
		{"grpc.Method", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if x := svc.mustSee(t, id); !x.methodOK || x.method != service+"UnaryCall" {
				t.Errorf("grpc.Method = %q, %v; want %q", x.method, x.methodOK, service+"UnaryCall")
			}
			ctx, id = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
			if err == nil {
				_, err = recvAll(stream)
			}
			if err != nil {
				t.Fatal(err)
			}
			if x := svc.mustSee(t, id); !x.methodOK || x.method != service+"StreamingOutputCall" {
				t.Errorf("grpc.Method in a stream = %q, %v; want %q", x.method, x.methodOK, service+"StreamingOutputCall")
			}
		}},
		{"the client's deadline is the handler's", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			dl := time.Now().Add(3 * time.Second)
			ctx, cancel := context.WithDeadline(ctx, dl)
			defer cancel()
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			x := svc.mustSee(t, id)
			if !x.hasDeadline {
				t.Fatal("the handler's context has no deadline")
			}
			if d := x.deadline.Sub(dl); d < -500*time.Millisecond || d > 500*time.Millisecond {
				t.Errorf("the handler's deadline is %v from the client's", d)
			}
			// Without a deadline, none.
			ctx, id = fpCall(t, "")
			if _, err := client.UnaryCall(context.WithoutCancel(ctx), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if x := svc.mustSee(t, id); x.hasDeadline {
				t.Errorf("a call without a deadline has one in the handler: %v", time.Until(x.deadline))
			}
		}},
		{"a client cancel ends the handler's context", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "wait-cancel")
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				done <- err
			}()
			select {
			case <-svc.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the handler did not start")
			}
			cancel()
			select {
			case err := <-svc.ctxEnded:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("the handler's context ended with %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the handler's context did not end within 5 s of the client's cancel")
			}
			e2e.WantCode(t, "the cancelled call", <-done, codes.Canceled)
		}},
		{"status details round-trip", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "details")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			st := status.Convert(err)
			if st.Code() != codes.FailedPrecondition || st.Message() != "precondition failed" {
				t.Fatalf("status %v, %q; want FailedPrecondition, \"precondition failed\"", st.Code(), st.Message())
			}
			ds := st.Details()
			if len(ds) != 1 {
				t.Fatalf("details %v; want one ErrorInfo", ds)
			}
			if ei, ok := ds[0].(*errdetails.ErrorInfo); !ok || !proto.Equal(ei, fpErrorInfo) {
				t.Errorf("detail %v; want %v", ds[0], fpErrorInfo)
			}
		}},
		{"unknown service and method are Unimplemented", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			err := conn.Invoke(e2e.Context(t), "/no.such.Service/Call", &testgrpc.Empty{}, &testgrpc.Empty{})
			e2e.WantCode(t, "unknown service", err, codes.Unimplemented)
			if got, want := status.Convert(err).Message(), "unknown service no.such.Service"; got != want {
				t.Errorf("unknown service: message %q, want grpc-go's %q", got, want)
			}
			err = conn.Invoke(e2e.Context(t), service+"NoSuchMethod", &testgrpc.Empty{}, &testgrpc.Empty{})
			e2e.WantCode(t, "unknown method", err, codes.Unimplemented)
			if got, want := status.Convert(err).Message(), "unknown method NoSuchMethod for service grpc.testing.TestService"; got != want {
				t.Errorf("unknown method: message %q, want grpc-go's %q", got, want)
			}
			stream, err := conn.NewStream(e2e.Context(t), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, service+"NoSuchStream")
			if err == nil {
				stream.CloseSend()
				err = stream.RecvMsg(&testgrpc.Empty{})
			}
			e2e.WantCode(t, "unknown streaming method", err, codes.Unimplemented)
		}},
		{"compression", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}, grpc.UseCompressor("gzip"))
			sctx, _ := fpCall(t, "")
			stream, serr := client.StreamingOutputCall(sctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}}}, grpc.UseCompressor("gzip"))
			if serr == nil {
				_, serr = recvAll(stream)
			}
			if p.want == grpcipc.ProtocolHTTP2 {
				if err != nil || serr != nil {
					t.Errorf("gzip over HTTP/2: unary %v, stream %v; want both OK", err, serr)
				}
				return
			}
			for what, err := range map[string]error{"unary": err, "stream": serr} {
				st := status.Convert(err)
				if st.Code() != codes.Unimplemented || !strings.Contains(strings.ToLower(st.Message()), "compress") {
					t.Errorf("gzip on the fast path (%s): %v; want Unimplemented, a message about compression", what, err)
				}
			}
			if svc.seenBy(id) != nil {
				t.Error("the handler ran for a call that asked for compression on the fast path")
			}
		}},
		{"MaxCallRecvMsgSize", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, _ := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 64 << 10}, grpc.MaxCallRecvMsgSize(1024))
			e2e.WantCode(t, "a 64 KiB reply over a 1 KiB call limit", err, codes.ResourceExhausted)
			ctx, _ = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 64 << 10}}}, grpc.MaxCallRecvMsgSize(1024))
			if err == nil {
				_, err = recvAll(stream)
			}
			e2e.WantCode(t, "a streamed 64 KiB message over a 1 KiB call limit", err, codes.ResourceExhausted)
			ctx, _ = fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 64 << 10}); err != nil {
				t.Errorf("the same reply without the limit, after: %v", err)
			}
		}},
		{"server WithMaxRecvMsgSize", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			big := &testgrpc.Payload{Body: make([]byte, fpServerMaxRecv+1)}
			ctx, id := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: big})
			e2e.WantCode(t, "a request over the server's limit", err, codes.ResourceExhausted)
			if svc.seenBy(id) != nil {
				t.Error("the handler ran for a request over the server's limit")
			}
			ctx, _ = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{Payload: big})
			if err == nil {
				_, err = recvAll(stream)
			}
			e2e.WantCode(t, "a stream's request over the server's limit", err, codes.ResourceExhausted)
			// A client stream: small, over the limit, small. The handler
			// must not see the small ones as the whole stream.
			ctx, _ = fpCall(t, "")
			up, err := client.StreamingInputCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{10, fpServerMaxRecv + 1, 20} {
				if err := up.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
					break // io.EOF: the call ended; CloseAndRecv says how
				}
			}
			res, err := up.CloseAndRecv()
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("a client stream with a message over the server's limit: %v (handler summed %d bytes); want ResourceExhausted", err, res.GetAggregatedPayloadSize())
			}
			ctx, _ = fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, fpServerMaxRecv/2)}}); err != nil {
				t.Errorf("a request within the limit, after: %v", err)
			}
		}},
		{"MaxCallSendMsgSize", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			ctx, id := fpCall(t, "")
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, 4096)}}, grpc.MaxCallSendMsgSize(1024))
			e2e.WantCode(t, "a 4 KiB request over a 1 KiB send limit", err, codes.ResourceExhausted)
			if svc.seenBy(id) != nil {
				t.Error("the handler ran for a request over the client's send limit")
			}
			ctx, _ = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, 4096)}}, grpc.MaxCallSendMsgSize(1024))
			if err == nil {
				_, err = recvAll(stream)
			}
			e2e.WantCode(t, "a stream's 4 KiB request over a 1 KiB send limit", err, codes.ResourceExhausted)
		}},
		{"PerRPCCredentials call option", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			creds := &fpToken{}
			ctx, id := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.PerRPCCredentials(creds)); err != nil {
				t.Fatal(err)
			}
			if got := svc.mustSee(t, id).md.Get("authorization"); !slices.Equal(got, []string{"Bearer fp-token"}) {
				t.Errorf("authorization metadata in the handler: %q", got)
			}
			creds.mu.Lock()
			defer creds.mu.Unlock()
			if creds.method != service+"UnaryCall" {
				t.Errorf("the credentials' RequestInfo.Method: %q, want %q", creds.method, service+"UnaryCall")
			}
		}},
		{"client interceptors", func(t *testing.T, p fpProtocol, _ *grpcipc.ClientConn, _ testgrpc.TestServiceClient) {
			var mu sync.Mutex
			var order []string
			var ccNil []bool
			note := func(s string, cc *grpc.ClientConn) {
				mu.Lock()
				defer mu.Unlock()
				order = append(order, s)
				ccNil = append(ccNil, cc == nil)
			}
			unary := func(name string) grpc.UnaryClientInterceptor {
				return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
					note(name+">"+method, cc)
					err := invoker(ctx, method, req, reply, cc, opts...)
					note(name+"<", cc)
					return err
				}
			}
			streaming := func(name string) grpc.StreamClientInterceptor {
				return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
					note(name+">"+method, cc)
					s, err := streamer(ctx, desc, cc, method, opts...)
					note(name+"<", cc)
					return s, err
				}
			}
			conn := fpConnect(t, endpoint, p,
				grpcipc.WithUnaryClientInterceptor(unary("c1"), unary("c2")),
				grpcipc.WithStreamClientInterceptor(streaming("cs1"), streaming("cs2")))
			client := testgrpc.NewTestServiceClient(conn)
			mu.Lock()
			order, ccNil = nil, nil
			mu.Unlock()
			ctx, _ := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			ctx, _ = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}})
			if err == nil {
				_, err = recvAll(stream)
			}
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			want := []string{"c1>" + service + "UnaryCall", "c2>" + service + "UnaryCall", "c2<", "c1<",
				"cs1>" + service + "StreamingOutputCall", "cs2>" + service + "StreamingOutputCall", "cs2<", "cs1<"}
			if !slices.Equal(order, want) {
				t.Errorf("client interceptors ran %q, want %q", order, want)
			}
			// Documented: on the fast path the interceptors' *grpc.ClientConn is nil.
			for i, isNil := range ccNil {
				if isNil != (p.want == grpcipc.ProtocolFast) {
					t.Errorf("interceptor call %d (%s): cc == nil is %v on %s", i, order[i], isNil, p.name)
				}
			}
		}},
		{"grpc.Peer call option", func(t *testing.T, p fpProtocol, conn *grpcipc.ClientConn, client testgrpc.TestServiceClient) {
			var pr peer.Peer
			ctx, _ := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Peer(&pr)); err != nil {
				t.Fatal(err)
			}
			ai, ok := grpcipc.AuthInfoFromPeer(&pr)
			if !ok {
				t.Fatalf("the call's peer has no grpcipc AuthInfo: %#v", pr.AuthInfo)
			}
			checkOurIdentity(t, "the server as the client saw it", ai.Peer)
			if pr.Addr == nil {
				t.Error("the call's peer has no address")
			}
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range fpProtocols {
				t.Run(p.name, func(t *testing.T) {
					c.f(t, p, conns[p.name], testgrpc.NewTestServiceClient(conns[p.name]))
				})
			}
		})
	}

	t.Run("stats handler events", func(t *testing.T) {
		type seq struct {
			events          []string
			inLens, outLens []int
		}
		got := map[string]map[string]seq{} // call kind -> protocol -> what the handler saw
		for _, p := range fpProtocols {
			client := testgrpc.NewTestServiceClient(conns[p.name])
			record := func(kind, id string) {
				var s seq
				s.events, s.inLens, s.outLens = env.stats.rpc(t, id)
				if got[kind] == nil {
					got[kind] = map[string]seq{}
				}
				got[kind][p.name] = s
			}
			ctx, id := fpCall(t, "")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100, Payload: &testgrpc.Payload{Body: make([]byte, 50)}}); err != nil {
				t.Fatal(err)
			}
			record("unary", id)
			ctx, id = fpCall(t, "headers")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 7}); err != nil {
				t.Fatal(err)
			}
			record("unary with header metadata", id)
			ctx, id = fpCall(t, "details")
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.FailedPrecondition {
				t.Fatal(err)
			}
			record("unary failing", id)
			ctx, id = fpCall(t, "")
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 2000}, {Size: 30}}})
			if err == nil {
				_, err = recvAll(stream)
			}
			if err != nil {
				t.Fatal(err)
			}
			record("server-streaming", id)
		}
		kinds := make([]string, 0, len(got))
		for k := range got {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, kind := range kinds {
			fast, h2 := got[kind]["fast"], got[kind]["http2"]
			t.Logf("%s: http2 %v in %v out %v; fast %v in %v out %v", kind, h2.events, h2.inLens, h2.outLens, fast.events, fast.inLens, fast.outLens)
			if !slices.Equal(fast.events, h2.events) {
				t.Errorf("%s call: the stats handler saw\n  fast path: %v\n  HTTP/2:    %v", kind, fast.events, h2.events)
			}
			if !slices.Equal(fast.inLens, h2.inLens) || !slices.Equal(fast.outLens, h2.outLens) {
				t.Errorf("%s call: payload lengths in %v out %v on the fast path, in %v out %v on HTTP/2", kind, fast.inLens, fast.outLens, h2.inLens, h2.outLens)
			}
		}
	})

	for _, p := range fpProtocols {
		if got := conns[p.name].Protocol(); got != p.want {
			t.Errorf("after the checks the %s client speaks %q", p.name, got)
		}
	}
}

// checkHeaderTrailer: h and tr are what the "headers" mode handlers set.
func checkHeaderTrailer(t *testing.T, h, tr metadata.MD) {
	t.Helper()
	for k, want := range map[string]string{"h-set": "1", "h-sent": "2"} {
		if got := h.Get(k); !slices.Equal(got, []string{want}) {
			t.Errorf("header %q: %q, want [%q] (header %v)", k, got, want, h)
		}
	}
	for k, want := range map[string]string{"t-set": "3", "t-data-bin": "\x00\xff"} {
		if got := tr.Get(k); !slices.Equal(got, []string{want}) {
			t.Errorf("trailer %q: %q, want [%q] (trailer %v)", k, got, want, tr)
		}
	}
	if got := h.Get("t-set"); len(got) > 0 {
		t.Errorf("trailer metadata in the header: %v", h)
	}
}
