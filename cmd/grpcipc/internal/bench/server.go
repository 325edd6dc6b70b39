// Package bench measures gRPC over local transports against its
// baselines: a raw socket (the floor) and grpc-go with default options.
// "grpcipc bench" runs Serve in a child process and Run in itself; the Go
// benchmarks call the same measurements.
package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/cmd/grpcipc/internal/bench/benchpb"
	"google.golang.org/grpc"
)

// Stacks measured.
const (
	StackRaw      = "raw"           // a bare socket: the floor
	StackRawAlloc = "raw-alloc"     // the same, its client allocating every message as generated stubs do
	StackGRPCGo   = "grpc-go"       // grpc-go with default options: what users get today
	StackGRPCIPC  = "grpcipc"       // grpcipc's Listen, NewServer and NewClient: the fast path
	StackGRPCIPC2 = "grpcipc-http2" // the same server, its client asking for HTTP/2 (WithHTTP2)
	rawEcho       = byte('E')       // raw protocol: echo length-prefixed messages
	rawStream     = byte('S')       // raw protocol: send messages until closed
	rawPayload    = byte('P')       // raw protocol: send one payload, then close
	maxRawSize    = 64 << 20        // refuse larger raw messages
	benchApp      = "grpcipc-bench" // abstract socket names
)

// Target is one server to measure: a stack over a transport, at an
// endpoint in grpcipc's syntax.
type Target struct {
	Stack     string `json:"stack"`
	Transport string `json:"transport"`
	Endpoint  string `json:"endpoint"`
}

// Name is the target as the table shows it.
func (t Target) Name() string { return t.Stack + " " + t.Transport }

// Serve starts every target this OS has in this process (raw-alloc is the
// raw target read another way: Dial it with the raw target's endpoint),
// with sockets in dir, and returns them and a function that stops them
// all. "grpcipc bench" serves each in a process of its own instead
// (ServeTarget).
func Serve(ctx context.Context, dir string) ([]Target, func(), error) {
	var (
		targets []Target
		closers []func()
	)
	stop := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	for _, spec := range Specs() {
		if spec.Stack == StackRawAlloc {
			continue
		}
		t, closeIt, err := ServeTarget(ctx, dir, spec)
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("%s %s: %w", spec.Stack, spec.Transport, err)
		}
		targets = append(targets, t)
		closers = append(closers, closeIt)
	}
	return targets, stop, nil
}

func serveGRPC(opts []grpc.ServerOption) func(net.Listener) func() {
	return func(l net.Listener) func() {
		s := grpc.NewServer(opts...)
		benchpb.RegisterBenchServer(s, benchServer{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Serve(l)
		}()
		return func() { s.Stop(); <-done }
	}
}

func serveGRPCIPC(s *grpcipc.Server) func(net.Listener) func() {
	benchpb.RegisterBenchServer(s, benchServer{})
	return func(l net.Listener) func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Serve(l)
		}()
		return func() { s.Stop(); <-done }
	}
}

type benchServer struct {
	benchpb.UnimplementedBenchServer
}

func (benchServer) Echo(_ context.Context, p *benchpb.Payload) (*benchpb.Payload, error) {
	return p, nil
}

func (benchServer) Stream(req *benchpb.StreamRequest, stream grpc.ServerStreamingServer[benchpb.Payload]) error {
	if req.GetSizeBytes() < 0 || req.GetSizeBytes() > maxRawSize {
		return fmt.Errorf("size %d out of range", req.GetSizeBytes())
	}
	if total := req.GetTotalBytes(); total != 0 {
		// One payload, from the server's bytes, in messages of the size.
		b, err := payloadOf(total)
		if err != nil {
			return err
		}
		size := max(int(req.GetSizeBytes()), 1)
		msg := &benchpb.Payload{}
		for off := 0; off < len(b); off += size {
			msg.Data = b[off:min(off+size, len(b))]
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		return nil
	}
	msg := &benchpb.Payload{Data: make([]byte, req.GetSizeBytes())}
	for {
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}

// Blob sends the payload as a sealed memory file with the response:
// copied into a new one, or the one made in place before (prepare).
func (benchServer) Blob(ctx context.Context, req *benchpb.BlobRequest) (*benchpb.Payload, error) {
	switch {
	case req.GetPrepare():
		return &benchpb.Payload{}, prepareInPlace(req.GetSizeBytes())
	case req.GetInPlace():
		payloadMu.Lock()
		m := inPlace
		inPlace = nil
		payloadMu.Unlock()
		if m == nil {
			return nil, errors.New("no memory file made in place: prepare first")
		}
		f, err := m.Seal()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := grpcipc.SendFiles(ctx, f); err != nil {
			return nil, err
		}
		return &benchpb.Payload{}, nil
	}
	b, err := payloadOf(req.GetSizeBytes())
	if err != nil {
		return nil, err
	}
	f, err := grpcipc.SealedFile("bench-payload", b)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the client has its own once sent
	if err := grpcipc.SendFiles(ctx, f); err != nil {
		return nil, err
	}
	return &benchpb.Payload{}, nil
}

// maxPayload: the largest payload the payload workload moves.
const maxPayload = 1 << 30

var (
	payloadMu  sync.Mutex
	payloadBuf []byte              // the server's payload, of the size asked last
	inPlace    *grpcipc.MemoryFile // made by prepare, sent by in_place
)

// prepareInPlace makes a memory file of n bytes holding the payload,
// written in place: the bytes a sender that makes its data where the
// receiver reads it has. The payload in the heap is dropped: this sender
// holds its payload once, there.
func prepareInPlace(n int64) error {
	if n <= 0 || n > maxPayload {
		return fmt.Errorf("a payload of %d bytes: 1 to %d", n, maxPayload)
	}
	payloadMu.Lock()
	defer payloadMu.Unlock()
	if inPlace != nil {
		inPlace.Close()
	}
	payloadBuf = nil
	debug.FreeOSMemory()
	m, err := grpcipc.NewMemoryFile("bench-in-place", int(n))
	if err != nil {
		return err
	}
	b := m.Bytes()
	for i := range b {
		b[i] = byte(i * 7)
	}
	inPlace = m
	return nil
}

// payloadOf returns the first n bytes of the server's payload: the bytes
// a sender has, which each way of moving them starts from.
func payloadOf(n int64) ([]byte, error) {
	if n <= 0 || n > maxPayload {
		return nil, fmt.Errorf("a payload of %d bytes: 1 to %d", n, maxPayload)
	}
	payloadMu.Lock()
	defer payloadMu.Unlock()
	if int64(len(payloadBuf)) != n {
		// Exactly n: a sender holds its payload once, and no more.
		payloadBuf = nil
		debug.FreeOSMemory()
		payloadBuf = make([]byte, n)
		for i := range payloadBuf {
			payloadBuf[i] = byte(i * 7)
		}
	}
	return payloadBuf, nil
}

// serveRaw answers the raw protocol: a mode byte, then for 'E' messages
// (4-byte big-endian length, bytes) echoed back, for 'S' a 4-byte size and
// messages of that size sent until the connection closes, for 'P' an
// 8-byte total and a 4-byte chunk size, and the server's payload of that
// total written in chunks of that size.
func serveRaw(l net.Listener) func() {
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
				rawConn(c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

func rawConn(c net.Conn) {
	var hdr [4]byte
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case rawEcho:
		buf := make([]byte, 0, 64<<10)
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n > maxRawSize {
				return
			}
			if cap(buf) < int(n) {
				buf = make([]byte, n)
			}
			buf = buf[:n]
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(hdr[:]); err != nil {
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
		if n > maxRawSize {
			return
		}
		msg := make([]byte, 4+n)
		copy(msg, hdr[:])
		for {
			if _, err := c.Write(msg); err != nil {
				return
			}
		}
	case rawPayload:
		var total [8]byte
		if _, err := io.ReadFull(c, total[:]); err != nil {
			return
		}
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		b, err := payloadOf(int64(binary.BigEndian.Uint64(total[:])))
		chunk := int(binary.BigEndian.Uint32(hdr[:]))
		if err != nil || chunk <= 0 || chunk > maxRawSize {
			return
		}
		for off := 0; off < len(b); off += chunk {
			if _, err := c.Write(b[off:min(off+chunk, len(b))]); err != nil {
				return
			}
		}
	}
}

// Specs are the targets "grpcipc bench" measures on this OS, without
// endpoints: ServeTarget gives each one.
func Specs() []Target {
	specs := []Target{{Stack: StackRaw}, {Stack: StackRawAlloc}, {Stack: StackGRPCGo, Transport: "tcp"}}
	probe, err := net.Listen("unix", filepath.Join(os.TempDir(), fmt.Sprintf("grpcipc-bench-probe-%d.sock", os.Getpid())))
	unix := err == nil
	if unix {
		probe.Close()
		specs[0].Transport, specs[1].Transport = "unix", "unix"
		specs = append(specs, Target{Stack: StackGRPCGo, Transport: "unix"})
	} else {
		specs[0].Transport, specs[1].Transport = "tcp", "tcp"
	}
	if def, err := grpcipc.DefaultEndpoint(benchApp); err == nil && def.Transport == grpcipc.NamedPipe {
		return append(specs, Target{Stack: StackGRPCIPC, Transport: string(grpcipc.NamedPipe)})
	}
	specs = append(specs, Target{Stack: StackGRPCIPC, Transport: string(grpcipc.Unix)},
		Target{Stack: StackGRPCIPC2, Transport: string(grpcipc.Unix)})
	if _, err := grpcipc.ParseEndpoint("unix-abstract:x"); err == nil {
		specs = append(specs, Target{Stack: StackGRPCIPC, Transport: string(grpcipc.UnixAbstract)})
	}
	return specs
}

// ServeTarget serves the target spec names (its stack and transport) with
// its socket, if any, in dir, and returns it with its endpoint and a
// function that stops it.
func ServeTarget(ctx context.Context, dir string, spec Target) (Target, func(), error) {
	name := fmt.Sprintf("%s-%d", strings.ReplaceAll(spec.Stack+"-"+spec.Transport, "/", "-"), os.Getpid())
	path := filepath.Join(dir, name+".sock")
	t := spec
	var (
		l     net.Listener
		err   error
		serve func(net.Listener) func()
	)
	switch spec.Stack {
	case StackRaw, StackRawAlloc, StackGRPCGo:
		serve = serveRaw
		if spec.Stack == StackGRPCGo {
			serve = serveGRPC(nil)
		}
		if spec.Transport == "tcp" {
			l, err = net.Listen("tcp", "127.0.0.1:0")
			if err == nil {
				t.Endpoint = "tcp://" + l.Addr().String()
			}
		} else {
			l, err = net.Listen("unix", path)
			t.Endpoint = "unix://" + filepath.ToSlash(path)
		}
	case StackGRPCIPC, StackGRPCIPC2:
		srv, serr := grpcipc.NewServer()
		if serr != nil {
			return Target{}, nil, serr
		}
		serve = serveGRPCIPC(srv)
		switch grpcipc.Transport(spec.Transport) {
		case grpcipc.Unix:
			t.Endpoint = "unix://" + filepath.ToSlash(path)
		case grpcipc.UnixAbstract:
			t.Endpoint = "unix-abstract:" + benchApp + "-" + name
		case grpcipc.NamedPipe:
			t.Endpoint = "npipe:" + benchApp + "-" + name
		default:
			return Target{}, nil, fmt.Errorf("%w: grpcipc over %q", errUnknownStack, spec.Transport)
		}
		l, err = grpcipc.Listen(ctx, t.Endpoint)
	default:
		return Target{}, nil, fmt.Errorf("%w %q", errUnknownStack, spec.Stack)
	}
	if err != nil {
		return Target{}, nil, err
	}
	return t, serve(l), nil
}

// errUnknownStack is returned for a target this package cannot measure.
var errUnknownStack = errors.New("unknown stack")
