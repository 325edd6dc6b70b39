package fastpath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastio"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ClientConfig is what the root's client sets for a fast-path connection.
type ClientConfig struct {
	// AuthInfo is the server's, as the root's handshake checked it: in
	// grpc.Peer and the RequestInfo of per-RPC credentials.
	AuthInfo credentials.AuthInfo
	// SecurityLevel is the connection's: per-RPC credentials that require
	// transport security are sent only at PrivacyAndIntegrity.
	SecurityLevel credentials.SecurityLevel
	// Budget is the connection's memory budget (> 0); unless BudgetFixed,
	// it grows to twice the largest receive limit of a call.
	Budget      int64
	BudgetFixed bool
	// ClosedBy names the peer when it closes the connection ("child pid
	// 123"); "" says "the server".
	ClosedBy string
}

// ClientConn is the client's end of a fast-path connection: callers write
// their frames; a unary call alone on it reads its own reply, else a
// background goroutine reads (client_reader.go).
type ClientConn struct {
	conn net.Conn
	// files: what carries descriptors under conn, nil if nothing does
	// or the server's version does not (client_files.go)
	files     FilesConn
	filesBase uint64 // the connection's offset of the first frame's byte
	cfg       ClientConfig
	version   uint8 // of the protocol: what the server's preface said
	peer      peer.Peer
	w         fastio.Writer
	br        *bufio.Reader // what r reads (the reader role's)
	r         *wire.Reader  // the reader role's
	blk       fastio.Block  // HEADERS or TRAILERS in parts (the reader role's)
	slots     chan struct{} // one per stream that may be open
	// budget: what the server can make this client hold; it grows with
	// the calls' receive limits unless fixed (WithConnMemoryBudget)
	budget *fastio.Budget

	// leadDone is the leader's context's Done, which ends its waits for
	// room in the budget (the reader role's).
	leadDone <-chan struct{}

	// The reader role (client_reader.go); rmu is taken before mu.
	rmu         sync.Mutex
	role        readRole
	leader      *clientStream // the call that leads (roleLeader)
	interrupted bool          // a read deadline was set to stop the leader
	idle        *time.Timer   // the idle watch, made by the first armIdle
	idleArmed   bool
	leads       uint64          // calls that led so far
	leadsSeen   uint64          // leads at the idle watch's last turn
	watchDone   <-chan struct{} // the Done of the context watched for leaders
	watchStop   func() bool     // stops that watch

	// wakes counts the callers woken by the end of their unary call that
	// have not yet run: a request written while one has not is left in
	// the writer for the last of them to write, with the requests that
	// the others make meanwhile (a caller woken for its reply often makes
	// the next call at once), deferRequests at a time.
	wakes atomic.Int32

	mu         sync.Mutex
	streams    map[uint32]*clientStream
	next       uint32 // the next stream id
	goingAway  bool
	lastStream uint32
	err        error // why the connection ended
	done       chan struct{}
}

// ErrNotStarted: the server's GOAWAY says it did not start the stream,
// which may be retried on a new connection.
var ErrNotStarted = status.Error(codes.Unavailable, "grpcipc: the server is stopping and did not start the call")

// NewClientConn serves the client's end of conn, on which the server
// answered the fast path's offer with its preface of version (read
// already: br, which reads conn, is positioned after it). It starts the
// connection's background reader, which reads until the first call.
func NewClientConn(conn net.Conn, br *bufio.Reader, version uint8, cfg ClientConfig) *ClientConn {
	fc := newClientConn(conn, br, version, cfg)
	fc.rmu.Lock()
	fc.startReader(wire.Header{}, nil, false)
	fc.rmu.Unlock()
	return fc
}

func newClientConn(conn net.Conn, br *bufio.Reader, version uint8, cfg ClientConfig) *ClientConn {
	fc := &ClientConn{
		conn: conn, cfg: cfg, version: version,
		budget:  fastio.NewBudget(cfg.Budget, nil),
		slots:   make(chan struct{}, MaxStreams),
		streams: map[uint32]*clientStream{},
		next:    1,
		done:    make(chan struct{}),
	}
	fc.w.Conn = conn
	fc.br = br
	fc.r = wire.NewReader(br, wire.DefaultMaxFrame)
	fc.blk.Charge, fc.blk.Release = fc.charge, fc.budget.Release
	fc.peer = peer.Peer{Addr: conn.RemoteAddr(), LocalAddr: conn.LocalAddr(), AuthInfo: cfg.AuthInfo}
	fc.startFiles()
	return fc
}

// Usable says whether new calls may start on this connection.
func (fc *ClientConn) Usable() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.err == nil && !fc.goingAway && fc.next < 1<<31
}

// close ends the connection: its calls in flight fail with UNAVAILABLE.
func (fc *ClientConn) Close(err error) {
	fc.mu.Lock()
	if fc.err != nil {
		fc.mu.Unlock()
		return
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("the server closed the connection")
		if fc.cfg.ClosedBy != "" {
			// "the child pid 123", "the parent pid 45": a plugin host
			// learns whom it lost (child.Wait says how it ended).
			err = fmt.Errorf("the %s closed the connection (did it exit?)", fc.cfg.ClosedBy)
		}
	}
	fc.err = err
	streams := fc.streams
	fc.streams = map[uint32]*clientStream{}
	fc.mu.Unlock()
	fc.conn.Close()
	close(fc.done)
	fc.rmu.Lock()
	if fc.idle != nil {
		fc.idle.Stop()
		fc.idleArmed = false
	}
	if fc.watchStop != nil {
		fc.watchStop()
		fc.watchStop = nil
	}
	fc.rmu.Unlock()
	for _, st := range streams {
		st.end(status.New(codes.Unavailable, "grpcipc: connection closed: "+err.Error()), nil)
	}
}

// smallTrailer: trailers of at most this many bytes are not charged.
const smallTrailer = 256

// charge charges n bytes to the connection's budget, waiting for room
// as for messages (fastio.Block's Charge).
func (fc *ClientConn) charge(n int) bool { return chargeWaiting(fc.budget, fc.done, fc.leadDone, n) }

// frame handles one frame from the server, and checks that no
// descriptors came with bytes that announce none.
func (fc *ClientConn) frame(h wire.Header, p []byte) error {
	if err := fc.handle(h, p); err != nil {
		return err
	}
	return fc.strayFiles()
}

// handle handles one frame from the server.
func (fc *ClientConn) handle(h wire.Header, p []byte) error {
	held := 0
	if pid, pt, inParts := fc.blk.Pending(); inParts || h.Type == wire.TypeHeaders || h.Type == wire.TypeTrailers {
		if inParts && (h.Stream != pid || h.Type != pt) {
			return fmt.Errorf("%w: a %v frame on stream %d between the parts of the %v of stream %d", wire.ErrProtocol, h.Type, h.Stream, pt, pid)
		}
		payload, charged, done, err, connErr := fc.blk.Add(h, p)
		switch {
		case connErr != nil:
			return connErr
		case !done:
			return nil
		case err != nil:
			if st := fc.stream(h.Stream); st != nil {
				s := fc.budgetStatus()
				if !errors.Is(err, fastio.ErrNoRoom) {
					s = status.Newf(codes.Internal, "grpcipc: the server's %v are over the fast path's limit (%d bytes as HTTP/2 counts them): %v", strings.ToLower(h.Type.String()), wire.MaxHeaderListSize, err)
				}
				if h.Type == wire.TypeTrailers {
					fc.remove(st)
					st.end(s, nil)
				} else {
					st.abort(s)
				}
			}
			return nil
		}
		p, held = payload, charged
	}
	switch h.Type {
	case wire.TypeHeaders:
		st := fc.stream(h.Stream)
		if st == nil {
			fc.budget.Release(held)
			return nil
		}
		// Charged before it is parsed: what its metadata will hold.
		cost := callCost(len(p), wire.Entries(wire.TypeHeaders, p))
		if held >= cost {
			fc.budget.Release(held - cost)
		} else if !fc.charge(cost - held) {
			fc.budget.Release(held)
			st.abort(fc.budgetStatus())
			return nil
		}
		md, err := wire.ParseMetadata(p)
		if err != nil {
			fc.budget.Release(cost)
			return err
		}
		st.setHeader(fromKV(md), cost)
	case wire.TypeMessage:
		st := fc.stream(h.Stream)
		if st == nil {
			return nil // a call that ended here first
		}
		give, serr, err := st.in.Add(h.Flags, p, st.maxRecv, fc)
		if serr == fastio.ErrNoRoom {
			give, serr, err = fc.addWaiting(st, h.Flags, p)
		}
		if err != nil {
			return err
		}
		if give > 0 {
			fc.window(h.Stream, give)
		}
		switch {
		case serr == nil:
			st.sawResponse()
		case errors.Is(serr, fastio.ErrNoRoom):
			st.abort(fc.budgetStatus())
		case errors.Is(serr, fastio.ErrCardinality):
			st.abort(status.New(codes.Internal, "grpcipc: cardinality violation: expected <EOF> for non server-streaming RPCs, but received another message"))
		default:
			st.abort(status.New(codes.ResourceExhausted, tooLargeMessage(serr)))
		}
	case wire.TypeTrailers:
		// Trailers of any size are charged, before they are parsed, until
		// the application learns the call's end: what they will hold,
		// their status details parsed too. (A few hundred bytes, every
		// call's, are not worth the charge.) Trailers that would hold more
		// than the whole budget end the call at once.
		st := fc.stream(h.Stream)
		cost := 0
		if st != nil && len(p) > smallTrailer {
			cost = callCost(len(p), wire.Entries(wire.TypeTrailers, p)) + detailsCost(p)
		}
		if held >= cost {
			fc.budget.Release(held - cost)
		} else if limit := fc.budget.Limit(); int64(cost) > limit {
			fc.budget.Release(held)
			fc.remove(st)
			st.end(status.Newf(codes.ResourceExhausted, "grpcipc: the server's trailers (%d bytes) would hold %d bytes once parsed, more than this client's memory budget (%d bytes)", len(p), cost, limit), nil)
			return nil
		} else if !fc.charge(cost - held) {
			fc.budget.Release(held)
			fc.remove(st)
			st.end(fc.budgetStatus(), nil)
			return nil
		}
		t, err := wire.ParseTrailer(p)
		if err != nil {
			fc.budget.Release(cost)
			return err
		}
		if st != nil {
			fc.remove(st)
			s := statusOf(&t)
			if s.Code() == codes.OK && st.in.InParts() {
				s = status.New(codes.Internal, "grpcipc: the server ended the call inside a message")
			}
			st.endCharged(s, fromKV(t.Metadata), cost)
		}
	case wire.TypeWindow:
		inc, err := wire.ParseWindow(p)
		if err != nil {
			return err
		}
		if st := fc.stream(h.Stream); st != nil {
			st.in.Grow(inc)
		}
	case wire.TypeGoAway:
		g, err := wire.ParseGoAway(p)
		if err != nil {
			return err
		}
		fc.goAway(g)
	case wire.TypeFiles:
		return fc.onFiles(h, p)
	case wire.TypePing:
		if h.Flags&wire.FlagAck == 0 {
			if len(p) != 8 {
				return fmt.Errorf("%w: PING payload of %d bytes, want 8", wire.ErrProtocol, len(p))
			}
			b := fc.w.Lock()
			*b = wire.AppendFrame(*b, 0, wire.TypePing, wire.FlagAck, p)
			fc.w.Unlock()
		}
	default:
		return fmt.Errorf("%w: a server sent a %v frame, which only clients send", wire.ErrProtocol, h.Type)
	}
	return nil
}

// goAway: streams above g.LastStream were not started; the others
// finish. Those not started are retried on a new connection only when the
// server is stopping (code UNAVAILABLE); a GOAWAY for anything else (a
// connection error, which a call on it may have caused; a refusal) ends
// them with its code and message.
func (fc *ClientConn) goAway(g wire.GoAway) {
	last := g.LastStream
	retry := codes.Code(g.Code) == codes.Unavailable
	fc.mu.Lock()
	fc.goingAway = true
	fc.lastStream = last
	var failed []*clientStream
	for id, st := range fc.streams {
		if id > last {
			failed = append(failed, st)
			delete(fc.streams, id)
			<-fc.slots
		}
	}
	idle := len(fc.streams) == 0
	fc.mu.Unlock()
	for _, st := range failed {
		if !retry {
			code := codes.Code(g.Code)
			if code == codes.OK {
				code = codes.Unavailable
			}
			st.end(status.New(code, "grpcipc: the server closed the connection before it started the call: "+g.Message), nil)
			continue
		}
		st.mu.Lock()
		st.notStarted = true
		st.mu.Unlock()
		st.end(status.Convert(ErrNotStarted), nil)
	}
	if idle {
		fc.Close(errors.New("the server is stopping"))
	}
}

// Take and TakeCap hand over the frame reader's buffer (fastio.Taker).
func (fc *ClientConn) Take(n int) *[]byte { return fastio.ReaderTaker{R: fc.r}.Take(n) }

// TakeCap: see Take.
func (fc *ClientConn) TakeCap() int { return fc.r.Cap() }

func (fc *ClientConn) stream(id uint32) *clientStream {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.streams[id]
}

func (fc *ClientConn) remove(st *clientStream) {
	fc.mu.Lock()
	_, ok := fc.streams[st.id]
	if ok {
		delete(fc.streams, st.id)
	}
	idle := fc.goingAway && len(fc.streams) == 0
	fc.mu.Unlock()
	if ok {
		<-fc.slots
	}
	if idle {
		fc.Close(errors.New("the server is stopping"))
	}
}

// SendWindow gives n bytes of a stream's window back to the server
// (fastio.WindowSender).
func (fc *ClientConn) SendWindow(id uint32, n int) { fc.window(id, n) }

// window gives n bytes of a stream's window back to the server.
func (fc *ClientConn) window(id uint32, n int) {
	b := fc.w.Lock()
	*b = wire.AppendHeader(*b, wire.Header{Length: wire.WindowSize, Stream: id, Type: wire.TypeWindow})
	*b = wire.AppendWindow(*b, uint32(n))
	fc.w.Unlock()
}

// CallInfo is what a call's options ask for ([ParseCallOptions]).
type CallInfo struct {
	header, trailer *metadata.MD
	peer            *peer.Peer
	maxRecv         int
	maxSend         int
	waitForReady    bool
	perRPC          []grpcPerRPC
	files           []*os.File  // to send with the call (FilesOption)
	receive         *[]*os.File // where the files the server sends go (ReceiveFilesOption)
}

// ParseCallOptions reads a call's options: those the fast path honours
// (grpc.Header, Trailer, Peer, MaxCallRecvMsgSize, MaxCallSendMsgSize,
// WaitForReady, PerRPCCredentials), with maxRecv the receive limit unless
// they set one. compressor is the first compressor asked for other than
// none and "identity": the fast path does not compress, and the root says
// so in its own words.
func ParseCallOptions(opts []grpc.CallOption, maxRecv int) (ci CallInfo, compressor string) {
	ci = CallInfo{maxRecv: maxRecv, maxSend: math.MaxInt32}
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			ci.header = o.HeaderAddr
		case grpc.TrailerCallOption:
			ci.trailer = o.TrailerAddr
		case grpc.PeerCallOption:
			ci.peer = o.PeerAddr
		case grpc.MaxRecvMsgSizeCallOption:
			ci.maxRecv = o.MaxRecvMsgSize
		case grpc.MaxSendMsgSizeCallOption:
			ci.maxSend = o.MaxSendMsgSize
		case grpc.FailFastCallOption:
			ci.waitForReady = !o.FailFast
		case grpc.PerRPCCredsCallOption:
			if f, ok := o.Creds.(*FilesOption); ok {
				ci.files = append(ci.files, f.Files...)
				continue
			}
			ci.perRPC = append(ci.perRPC, grpcPerRPC{o.Creds})
		case ReceiveFilesOption:
			ci.receive = o.Dst
		case grpc.CompressorCallOption:
			if o.CompressorType != "" && o.CompressorType != "identity" && compressor == "" {
				compressor = o.CompressorType
			}
		}
	}
	return ci, compressor
}

// WaitForReady says whether the call waits for a connection
// (grpc.WaitForReady) rather than failing at once without one.
func (ci *CallInfo) WaitForReady() bool { return ci.waitForReady }

// grpcPerRPC is a call's per-RPC credentials.
type grpcPerRPC struct{ c credentials.PerRPCCredentials }

// metadata adds the credentials' metadata to md.
func (p grpcPerRPC) metadata(ctx context.Context, cfg *ClientConfig, method string, md []wire.KV) ([]wire.KV, error) {
	if p.c.RequireTransportSecurity() && cfg.SecurityLevel < credentials.PrivacyAndIntegrity {
		return nil, status.Error(codes.Unauthenticated, "grpcipc: per-RPC credentials require transport security")
	}
	svc, _, _ := cutMethod(method)
	ri := credentials.RequestInfo{Method: method, AuthInfo: cfg.AuthInfo}
	m, err := p.c.GetRequestMetadata(credentials.NewContextWithRequestInfo(ctx, ri), "https://localhost/"+svc)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.Unavailable, "grpcipc: per-RPC credentials: %v", err)
	}
	return toKV(metadata.New(m), md)
}

// BudgetUsed reports the bytes in use of the connection's memory budget
// (tests and diagnostics).
func (fc *ClientConn) BudgetUsed() int64 { return fc.budget.Used() }

// open starts a stream: it takes a slot, numbers the stream and sends
// its CALL frame, followed by req and HALF_CLOSE when req is given and
// fits the window (a unary or server-streaming call); sent says so.
func (fc *ClientConn) open(ctx context.Context, method string, ci *CallInfo, desc *grpc.StreamDesc, req any) (st *clientStream, sent bool, err error) {
	if err := validateOutgoing(ctx); err != nil {
		return nil, false, err
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	call := wire.Call{Method: method}
	if dl, ok := ctx.Deadline(); ok {
		call.Timeout = time.Until(dl)
		if call.Timeout <= 0 {
			return nil, false, status.Error(codes.DeadlineExceeded, "context deadline exceeded")
		}
	}
	if call.Metadata, err = toKV(md, nil); err != nil {
		return nil, false, err
	}
	for _, c := range ci.perRPC {
		if call.Metadata, err = c.metadata(ctx, &fc.cfg, method, call.Metadata); err != nil {
			return nil, false, err
		}
	}
	if err := checkCallLimits(&call); err != nil {
		return nil, false, err
	}
	size := -1
	if desc == nil {
		if size = messageSize(req); size > ci.maxSend {
			return nil, false, status.Errorf(codes.ResourceExhausted, "grpcipc: trying to send message larger than max (%d vs. %d)", size, ci.maxSend)
		}
	}
	select {
	case fc.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ContextStatus(ctx)
	case <-fc.done:
		return nil, false, status.Error(codes.Unavailable, "grpcipc: connection closed")
	}
	if !fc.cfg.BudgetFixed {
		fc.budget.RaiseTo(2 * int64(min(ci.maxRecv, math.MaxInt32)))
	}
	var dups []int
	if len(ci.files) > 0 {
		if dups, err = fc.filesToSend(ci.files); err != nil {
			<-fc.slots
			return nil, false, err
		}
	}
	st = &clientStream{fc: fc, ctx: ctx, method: method, desc: desc, maxRecv: ci.maxRecv, maxSend: ci.maxSend, done: make(chan struct{})}
	st.in.Init(fc.budget, desc == nil || !desc.ServerStreams, fc, 0) // numbered below
	if desc != nil {
		st.hdr = make(chan struct{})
	}
	b := fc.w.Lock()
	fc.mu.Lock()
	if fc.err != nil || fc.goingAway {
		fc.mu.Unlock()
		fc.w.Release()
		<-fc.slots
		closeFDs(dups)
		return nil, false, ErrNotStarted
	}
	st.id = fc.next
	st.in.SetStream(st.id)
	fc.next++
	fc.streams[st.id] = st
	fc.mu.Unlock()
	var at int
	var fl wire.Flags
	if dups != nil {
		at = len(*b)
		*b = wire.AppendHeader(*b, wire.Header{Length: wire.FilesSize, Stream: st.id, Type: wire.TypeFiles})
		*b = wire.AppendFiles(*b, len(dups))
		fc.w.AttachFiles(at, dups) // the Writer's now
	}
	if ci.receive != nil && fc.files != nil {
		fl = wire.FlagFiles
		st.wantFiles = true
	}
	*b = appendBlock(*b, st.id, wire.TypeCall, fl, func(b []byte) []byte { return wire.AppendCall(b, &call) })
	if desc == nil && size >= 0 && size <= maxFramePayload && st.in.TryReserve(size) {
		mark := len(*b)
		*b, at = wire.BeginFrame(*b, st.id, wire.TypeMessage, 0)
		var merr error
		if *b, merr = marshal(*b, req); merr != nil {
			*b = (*b)[:mark]
			*b = wire.AppendFrame(*b, st.id, wire.TypeCancel, 0, nil)
			fc.w.Unlock()
			fc.remove(st)
			return nil, false, status.Errorf(codes.Internal, "grpcipc: failed to marshal the request: %v", merr)
		}
		wire.EndFrame(*b, at)
		*b = wire.AppendFrame(*b, st.id, wire.TypeHalfClose, 0, nil)
		st.halfClosed = true
		st.sentTo = fc.w.Mark()
		sent = true
	}
	var werr error
	if fc.wakes.Load() > 0 {
		werr = fc.w.UnlockDeferred(deferRequests) // a caller about to run writes it
	} else {
		werr = fc.w.Unlock()
	}
	if err := werr; err != nil {
		// The CALL did not go out: the server did not start the call.
		fc.writeFailed()
		fc.remove(st)
		st.mu.Lock()
		st.notStarted = true
		st.mu.Unlock()
		st.end(status.Convert(ErrNotStarted), nil)
		return nil, false, ErrNotStarted
	}
	return st, sent, nil
}

// checkCallLimits refuses, before anything is sent, a call whose CALL a
// fast-path server would refuse (docs/protocol.md, "Limits a reader
// applies"), so that the call fails alone, with a message that names the
// limit. A method name too long for the fast path is UNIMPLEMENTED: no
// fast-path server can have such a method, and grpc-go's server answers a
// method it lacks so. Metadata over the limit, 16 MiB counted as HTTP/2
// counts a header list (grpc-go's default limit), is INTERNAL, grpc-go's
// code for request headers over its server's limit.
func checkCallLimits(call *wire.Call) error {
	if n := len(call.Method); n > wire.MaxMethodLen {
		return status.Errorf(codes.Unimplemented, "grpcipc: the method name is %d bytes, over the fast path's limit (%d bytes)", n, wire.MaxMethodLen)
	}
	if n := wire.ListSize(call.Metadata); n > wire.MaxHeaderListSize {
		return status.Errorf(codes.Internal, "grpcipc: the request metadata is %d bytes (as HTTP/2 counts it: keys, values and 32 bytes an entry), over the limit (%d bytes)", n, wire.MaxHeaderListSize)
	}
	return nil
}

// deferRequests: requests left in the writer while callers woken by their
// replies have yet to run go out in writes of this many, so that the
// server can begin on the first while the callers make the others.
const deferRequests = 8

// woken: a caller counted in fc.wakes runs; the last of them writes the
// requests left in the writer meanwhile.
func (fc *ClientConn) woken() {
	if fc.wakes.Add(-1) == 0 {
		if err := fc.w.Flush(); err != nil {
			fc.writeFailed()
		}
	}
}

// writeFailed: the connection cannot be written to (the server closed
// it). No new call starts on it; its reader reads on to the end, so that
// calls whose replies arrived before the close still get them.
func (fc *ClientConn) writeFailed() {
	fc.mu.Lock()
	fc.goingAway = true
	fc.mu.Unlock()
}
