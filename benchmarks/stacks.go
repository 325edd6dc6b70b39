package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/grpcipc/grpcipc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"storj.io/drpc"
	"storj.io/drpc/drpcconn"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
)

// Every stack serves the same two methods with the same protobuf message
// (google.protobuf.BytesValue), so that each pays for marshalling what the
// others do:
//
//	Echo(BytesValue) BytesValue            unary: the request comes back
//	Stream(BytesValue) stream BytesValue   the request's length, in bytes,
//	                                       is the size of every message sent
//	                                       until the client goes away
//
// All but one serve on a Unix socket path; grpc-go over TCP loopback, what
// most users run today, is the baseline the ratios compare with.

const (
	serviceName = "peerbench.Bench"
	echoMethod  = "Echo"
	streamName  = "Stream"
)

// client is one caller's connection to a stack.
type client interface {
	echo(ctx context.Context, in, out *wrapperspb.BytesValue) error
	// stream receives messages of size bytes until ctx ends and returns
	// the bytes received after the first, calling started when the first
	// arrives.
	stream(ctx context.Context, size int, started func()) (int64, error)
	close()
}

// stack is an RPC stack under test, over one transport.
type stack struct {
	name      string
	transport string // "unix" or "tcp"
	// serve starts the server; path is a Unix socket path it may use.
	// addr is what dial is given: the path, or a TCP address.
	serve func(path string) (addr string, stop func(), err error)
	dial  func(addr string, callers int) ([]client, error)
	// protocol, if set, is what every client's protocol() must say after
	// the warm-up and at the end of the round; anything else fails the run.
	protocol string
	streams  bool
}

// key names the stack to its server process: no spaces.
func (st stack) key() string { return st.name + "/" + st.transport }

// String is the stack as the table shows it.
func (st stack) String() string { return st.name + " " + st.transport }

// The first is the baseline of the ratios.
var stacks = []stack{
	{name: "grpc-go", transport: "tcp", serve: serveGRPCGoTCP, dial: dialGRPCGo, streams: true},
	{name: "grpc-go", transport: "unix", serve: serveGRPCGoUnix, dial: dialGRPCGoUnix, streams: true},
	{name: "raw", transport: "unix", serve: serveRaw, dial: dialRaw, streams: true},
	{name: "grpcipc", transport: "unix", serve: serveGRPCIPC, dial: dialGRPCIPC, protocol: string(grpcipc.ProtocolFast), streams: true},
	{name: "grpcipc-http2", transport: "unix", serve: serveGRPCIPC, dial: dialGRPCIPCHTTP2, protocol: string(grpcipc.ProtocolHTTP2), streams: true},
	{name: "ttrpc", transport: "unix", serve: serveTTRPC, dial: dialTTRPC, streams: true},
	{name: "drpc", transport: "unix", serve: serveDRPC, dial: dialDRPC, streams: true},
}

// protocoler is a client that can tell which protocol it speaks.
type protocoler interface{ protocol() string }

// streamMessages sends messages of the requested size until send fails.
func streamMessages(req *wrapperspb.BytesValue, send func(*wrapperspb.BytesValue) error) error {
	msg := &wrapperspb.BytesValue{Value: make([]byte, len(req.GetValue()))}
	for {
		if err := send(msg); err != nil {
			return err
		}
	}
}

// --- grpc-go and grpcipc: one generated-style ServiceDesc.

type grpcBench struct{}

var grpcDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: echoMethod,
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    streamName,
		ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			in := new(wrapperspb.BytesValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			return streamMessages(in, func(m *wrapperspb.BytesValue) error { return ss.SendMsg(m) })
		},
	}},
}

// serveGRPC serves grpc-go on l.
func serveGRPC(l net.Listener) func() {
	s := grpc.NewServer()
	s.RegisterService(&grpcDesc, grpcBench{})
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	return func() { s.Stop(); <-done }
}

func serveGRPCGoTCP(string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	return l.Addr().String(), serveGRPC(l), nil
}

func serveGRPCGoUnix(path string) (string, func(), error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return "", nil, err
	}
	return path, serveGRPC(l), nil
}

// serveGRPCIPC serves grpcipc's NewServer on a socket from its Listen: the
// fast path and HTTP/2 on one listener.
func serveGRPCIPC(path string) (string, func(), error) {
	l, err := grpcipc.Listen(context.Background(), "unix://"+path)
	if err != nil {
		return "", nil, err
	}
	s, err := grpcipc.NewServer()
	if err != nil {
		l.Close()
		return "", nil, err
	}
	s.RegisterService(&grpcDesc, grpcBench{})
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	return path, func() { s.Stop(); <-done }, nil
}

// grpcClient calls through grpc-go's or grpcipc's ClientConn, as generated
// clients do.
type grpcClient struct {
	cc interface {
		grpc.ClientConnInterface
		Close() error
	}
}

func (g grpcClient) echo(ctx context.Context, in, out *wrapperspb.BytesValue) error {
	return g.cc.Invoke(ctx, "/"+serviceName+"/"+echoMethod, in, out)
}

func (g grpcClient) stream(ctx context.Context, size int, started func()) (int64, error) {
	s, err := g.cc.NewStream(ctx, &grpcDesc.Streams[0], "/"+serviceName+"/"+streamName)
	if err != nil {
		return 0, err
	}
	if err := s.SendMsg(&wrapperspb.BytesValue{Value: make([]byte, size)}); err != nil {
		return 0, err
	}
	if err := s.CloseSend(); err != nil {
		return 0, err
	}
	return receive(ctx, started, func() (int, error) {
		m := new(wrapperspb.BytesValue) // as generated stubs do: a message per Recv
		err := s.RecvMsg(m)
		return len(m.GetValue()), err
	})
}

func (g grpcClient) close() { g.cc.Close() }

// grpcipcClient is a grpcClient on a grpcipc.ClientConn, which tells
// which protocol it speaks.
type grpcipcClient struct {
	grpcClient
	cc *grpcipc.ClientConn
}

func (g grpcipcClient) protocol() string { return string(g.cc.Protocol()) }

// shared returns callers copies of one client: a stack whose connection
// takes concurrent calls, used as its users do.
func shared(c client, callers int) []client {
	cs := make([]client, callers)
	for i := range cs {
		cs[i] = c
	}
	return cs
}

func dialGRPCGo(target string, callers int) ([]client, error) {
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return shared(grpcClient{cc}, callers), nil
}

func dialGRPCGoUnix(path string, callers int) ([]client, error) {
	return dialGRPCGo("unix://"+path, callers)
}

func dialGRPCIPC(path string, callers int) ([]client, error) {
	return dialGRPCIPCWith(path, callers)
}

func dialGRPCIPCHTTP2(path string, callers int) ([]client, error) {
	return dialGRPCIPCWith(path, callers, grpcipc.WithHTTP2())
}

func dialGRPCIPCWith(path string, callers int, opts ...grpcipc.ClientOption) ([]client, error) {
	cc, err := grpcipc.NewClient("unix://"+path, opts...)
	if err != nil {
		return nil, err
	}
	return shared(grpcipcClient{grpcClient{cc}, cc}, callers), nil
}

// receive calls recv until it fails; the first message starts the clock
// and is not counted.
func receive(ctx context.Context, started func(), recv func() (int, error)) (int64, error) {
	var n int64
	first := true
	for {
		k, err := recv()
		if err != nil {
			if ctx.Err() != nil && !first {
				return n, nil
			}
			return n, err
		}
		if first {
			first = false
			started()
			continue
		}
		n += int64(k)
	}
}

// --- ttrpc (containerd): a hand-written ServiceDesc, as its generator
// would write.

func serveTTRPC(path string) (string, func(), error) {
	// ttrpc logs every stream whose client went away, which is how every
	// stream here ends.
	if err := log.SetLevel("fatal"); err != nil {
		return "", nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return "", nil, err
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		return "", nil, err
	}
	s.RegisterService(serviceName, &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
			echoMethod: func(_ context.Context, unmarshal func(any) error) (any, error) {
				in := new(wrapperspb.BytesValue)
				if err := unmarshal(in); err != nil {
					return nil, err
				}
				return in, nil
			},
		},
		Streams: map[string]ttrpc.Stream{
			streamName: {
				StreamingServer: true,
				Handler: func(_ context.Context, ss ttrpc.StreamServer) (any, error) {
					in := new(wrapperspb.BytesValue)
					if err := ss.RecvMsg(in); err != nil {
						return nil, err
					}
					return nil, streamMessages(in, func(m *wrapperspb.BytesValue) error { return ss.SendMsg(m) })
				},
			},
		},
	})
	go s.Serve(context.Background(), l)
	return path, func() { s.Close() }, nil
}

type ttrpcClient struct{ c *ttrpc.Client }

func (t ttrpcClient) echo(ctx context.Context, in, out *wrapperspb.BytesValue) error {
	return t.c.Call(ctx, serviceName, echoMethod, in, out)
}

func (t ttrpcClient) stream(ctx context.Context, size int, started func()) (int64, error) {
	s, err := t.c.NewStream(ctx, &ttrpc.StreamDesc{StreamingServer: true}, serviceName, streamName,
		&wrapperspb.BytesValue{Value: make([]byte, size)})
	if err != nil {
		return 0, err
	}
	return receive(ctx, started, func() (int, error) {
		m := new(wrapperspb.BytesValue)
		err := s.RecvMsg(m)
		return len(m.GetValue()), err
	})
}

func (t ttrpcClient) close() { t.c.Close() }

func dialTTRPC(path string, callers int) ([]client, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return shared(ttrpcClient{ttrpc.NewClient(conn)}, callers), nil
}

// --- drpc (storj): a hand-written Description, as its generator would
// write. A drpc connection carries one call at a time, so each caller has
// its own, as drpc's users do (or pool them).

type protoEncoding struct{}

func (protoEncoding) Marshal(msg drpc.Message) ([]byte, error) {
	return proto.Marshal(msg.(proto.Message))
}
func (protoEncoding) Unmarshal(buf []byte, msg drpc.Message) error {
	return proto.Unmarshal(buf, msg.(proto.Message))
}

type drpcDesc struct{}

func (drpcDesc) NumMethods() int { return 2 }

func (drpcDesc) Method(n int) (string, drpc.Encoding, drpc.Receiver, any, bool) {
	switch n {
	case 0:
		return "/" + serviceName + "/" + echoMethod, protoEncoding{},
			func(_ any, _ context.Context, in1, _ any) (drpc.Message, error) {
				return in1.(*wrapperspb.BytesValue), nil
			}, drpcImpl.Echo, true
	case 1:
		return "/" + serviceName + "/" + streamName, protoEncoding{},
			func(_ any, _ context.Context, in1, in2 any) (drpc.Message, error) {
				st := in2.(drpc.Stream)
				return nil, streamMessages(in1.(*wrapperspb.BytesValue), func(m *wrapperspb.BytesValue) error {
					return st.MsgSend(m, protoEncoding{})
				})
			}, drpcImpl.Stream, true
	}
	return "", nil, nil, nil, false
}

// drpcmux reads the input types from a method expression's signature,
// as generated code returns; the receivers above do the work.
type drpcImpl struct{}

func (drpcImpl) Echo(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return nil, errors.New("not called")
}

func (drpcImpl) Stream(*wrapperspb.BytesValue, drpc.Stream) error { return errors.New("not called") }

func serveDRPC(path string) (string, func(), error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return "", nil, err
	}
	mux := drpcmux.New()
	if err := mux.Register(drpcImpl{}, drpcDesc{}); err != nil {
		return "", nil, fmt.Errorf("drpc register: %w", err)
	}
	s := drpcserver.New(mux)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.Serve(ctx, l) }()
	return path, func() { cancel(); wg.Wait() }, nil
}

type drpcClient struct{ c *drpcconn.Conn }

func (d drpcClient) echo(ctx context.Context, in, out *wrapperspb.BytesValue) error {
	return d.c.Invoke(ctx, "/"+serviceName+"/"+echoMethod, protoEncoding{}, in, out)
}

func (d drpcClient) stream(ctx context.Context, size int, started func()) (int64, error) {
	s, err := d.c.NewStream(ctx, "/"+serviceName+"/"+streamName, protoEncoding{})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if err := s.MsgSend(&wrapperspb.BytesValue{Value: make([]byte, size)}, protoEncoding{}); err != nil {
		return 0, err
	}
	if err := s.CloseSend(); err != nil {
		return 0, err
	}
	return receive(ctx, started, func() (int, error) {
		m := new(wrapperspb.BytesValue)
		err := s.MsgRecv(m, protoEncoding{})
		if errors.Is(err, io.EOF) {
			return 0, err
		}
		return len(m.GetValue()), err
	})
}

func (d drpcClient) close() { d.c.Close() }

func dialDRPC(path string, callers int) ([]client, error) {
	cs := make([]client, 0, callers)
	for range callers {
		conn, err := net.Dial("unix", path)
		if err != nil {
			for _, c := range cs {
				c.close()
			}
			return nil, err
		}
		cs = append(cs, drpcClient{drpcconn.New(conn)})
	}
	return cs, nil
}
