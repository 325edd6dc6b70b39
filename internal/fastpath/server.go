package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastio"
	"github.com/grpcipc/grpcipc/internal/sockfile"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// ServerConfig is what the root's server sets for the fast path: its
// interceptors, stats handlers, limits and budgets, resolved (no zero
// means a default here).
type ServerConfig struct {
	Unary        []grpc.UnaryServerInterceptor  // chained here, the first outermost
	Stream       []grpc.StreamServerInterceptor // chained here, the first outermost
	Stats        []stats.Handler
	MaxRecv      int           // the largest message received
	MaxSend      int           // the largest message sent
	ConnBudget   int64         // each connection's memory budget (> 0)
	CallerBudget int64         // what one caller's connections share (>= ConnBudget)
	FrameTimeout time.Duration // a frame once begun arrives whole within it
	// MaxFilesPerCall: the most descriptors a call may carry to the
	// server (files.go); 0: calls that carry any are refused
	MaxFilesPerCall int
}

// Caller is an admitted connection as the root's admission knows it: who
// called, and what its policy lets it do. The root's accepted connection
// implements it, so that serving one allocates nothing more.
type Caller interface {
	// Close closes the connection and gives back its admission share.
	Close() error
	// AuthInfo is handed to handlers in their peer.Peer.
	AuthInfo() credentials.AuthInfo
	// BudgetKey names the memory budget the caller's connections share;
	// "" for none (the server's own user, root).
	BudgetKey() string
	// Authorize applies the policy to a call of method, before stats
	// handlers hear of it; its error is the call's status.
	Authorize(method string) error
	// Warn logs msg, rate-limited per caller, with the endpoint and the
	// caller added before attrs.
	Warn(msg string, attrs ...any)
}

// Server serves fast-path connections: it holds the method table, the
// handlers' worker pool, the connections being served and the callers'
// shared memory budgets.
type Server struct {
	cfg      ServerConfig
	methods  map[string]*method
	services map[string]bool
	unary    grpc.UnaryServerInterceptor
	stream   grpc.StreamServerInterceptor
	workers  *workerPool
	watch    inlineWatch         // of handlers run inline (inline.go)
	intern   func([]byte) string // a method's name without a copy, if registered

	mu       sync.Mutex
	stopped  bool // Shutdown began
	draining bool // a graceful Shutdown began (sticky)
	conns    map[*serverConn]bool
	budgets  map[string]*fastio.Budget // callers' memory budgets, by Caller.BudgetKey
	// fileShares: the descriptors the calls of each caller hold (files.go)
	fileShares map[string]*fileShare
	connsIdle  *sync.Cond // signalled when a connection ends
}

// NewServer makes a fast-path server configured by cfg.
func NewServer(cfg ServerConfig) *Server {
	s := &Server{
		cfg:      cfg,
		methods:  map[string]*method{},
		services: map[string]bool{},
		unary:    chainUnary(cfg.Unary),
		stream:   chainStream(cfg.Stream),
		workers:  newWorkerPool(),
		conns:    map[*serverConn]bool{},
		budgets:  map[string]*fastio.Budget{},
	}
	s.connsIdle = sync.NewCond(&s.mu)
	s.intern = s.internName
	s.watch = inlineWatch{s: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	return s
}

// Stopping marks the server as stopping, before its owner closes the
// listeners that feed it: a connection served from now on is closed at
// once, or, when graceful, told at once that no call will start (GOAWAY).
// A graceful stop stays graceful for the connections that come later.
func (s *Server) Stopping(graceful bool) {
	s.mu.Lock()
	s.stopped = true
	s.draining = s.draining || graceful
	s.mu.Unlock()
}

// Shutdown ends the server's connections: gracefully, each is told that
// no new calls start (GOAWAY) and closes once its calls are done;
// otherwise each is closed at once, failing its calls with UNAVAILABLE.
// It returns once every connection has ended; connections served after
// it began are refused, or, while draining, sent GOAWAY at once. A
// graceful Shutdown stays graceful for connections that come later.
func (s *Server) Shutdown(graceful bool) {
	s.mu.Lock()
	s.stopped = true
	s.draining = s.draining || graceful
	for c := range s.conns {
		if graceful {
			c.goAway()
		} else {
			c.close(errServerStopped)
		}
	}
	for len(s.conns) > 0 {
		s.connsIdle.Wait()
	}
	s.mu.Unlock()
}

// Close ends the handlers' idle workers and the watchdog of handlers run
// inline, once Shutdown has returned and every Serve with it.
func (s *Server) Close() {
	s.watch.close()
	s.workers.stop()
}

// BudgetsInUse reports the memory budgets in use on the server's
// connections and its callers' budgets, by key (tests and diagnostics).
func (s *Server) BudgetsInUse() (conns []int64, callers map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		conns = append(conns, c.budget.Used())
	}
	callers = map[string]int64{}
	for k, b := range s.budgets {
		callers[k] = b.Used()
	}
	return conns, callers
}

// serverConn is the server's end of a fast-path connection: one
// goroutine reads its frames; handlers write theirs.
type serverConn struct {
	s        *Server
	conn     net.Conn
	caller   Caller
	w        fastio.Writer
	r        *wire.Reader   // the reading goroutine's
	br       *bufio.Reader  // what r reads
	budget   *fastio.Budget // what the client makes the server hold
	key      string         // the key of the caller's budget, if it has one
	deadline bool           // a read deadline is set (reader)
	ready    *serverStream  // a unary call to run once the frame is read (reader)
	// batch: ready unary calls gathered to run in turn (reader; batch.go),
	// batchTook the sum of their methods' average handler times
	batch     []*serverStream
	batchTook int64
	inline    inlineState // whether a handler runs on the reader's goroutine (inline.go)
	// watchSeen: the inline state at the watchdog's last look (watchdog's)
	watchSeen uint64
	statsCtx  context.Context
	ctx       context.Context // ends when the connection closes; holds the peer
	// values: ctx's values, never cancelled: the parent of its calls'
	// contexts, which it cancels itself (callctx.go); noMetadata is it
	// with the incoming metadata of a call that has none
	// (FromIncomingContext copies it: calls cannot share changes)
	values, noMetadata context.Context
	cancel             context.CancelFunc
	version            uint8        // of the protocol, as the server's preface said
	blk                fastio.Block // a CALL in parts (reader)

	// Descriptors (files.go): files is nil when none can arrive; pending
	// those of a FILES frame whose CALL is next (reader's); filesHeld
	// those the connection's pending and calls hold, and callerFiles what
	// the caller's connections hold together
	files       FilesConn
	filesBase   uint64 // the connection's offset of the first frame's byte
	pending     *pendingFiles
	filesHeld   atomic.Int64
	callerFiles *fileShare

	mu        sync.Mutex
	streams   map[uint32]*serverStream
	last      uint32 // the highest stream started
	seen      uint32 // the highest stream the client opened (started or not)
	goingAway bool   // GOAWAY sent: no new streams
	closed    bool
	handlers  sync.WaitGroup
}

// Serve serves conn, an admitted connection whose client offered the fast
// path in version (at most wire.Version); rest holds the bytes read after
// the offer. It returns when the connection ends or, if a handler runs
// on this goroutine, when that handler is done and another goroutine reads
// on. conn is closed through caller.
func (s *Server) Serve(conn net.Conn, caller Caller, version uint8, rest []byte) {
	c := &serverConn{s: s, conn: conn, caller: caller, streams: map[uint32]*serverStream{}, version: version}
	c.w.Conn = conn
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: conn.RemoteAddr(), LocalAddr: conn.LocalAddr(), AuthInfo: caller.AuthInfo()})
	for _, h := range s.cfg.Stats {
		ctx = h.TagConn(ctx, &stats.ConnTagInfo{RemoteAddr: conn.RemoteAddr(), LocalAddr: conn.LocalAddr()})
		h.HandleConn(ctx, &stats.ConnBegin{})
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.values = context.WithoutCancel(c.ctx)
	c.noMetadata = metadata.NewIncomingContext(c.values, nil)
	// The budget before the connection is listed: BudgetsInUse reads it.
	var parent *fastio.Budget
	if c.key = caller.BudgetKey(); c.key != "" {
		parent = s.callerBudget(c.key)
	}
	c.budget = fastio.NewBudget(s.cfg.ConnBudget, parent)
	s.mu.Lock()
	if s.stopped && !s.draining {
		s.mu.Unlock()
		if c.key != "" {
			s.releaseCallerBudget(c.key)
		}
		caller.Close()
		c.cancel()
		return
	}
	s.conns[c] = true
	draining := s.draining
	s.mu.Unlock()

	c.statsCtx = ctx
	c.blk.Charge = c.charge
	c.blk.Release = c.budget.Release
	var in io.Reader = conn
	if len(rest) > 0 {
		in = io.MultiReader(bytes.NewReader(rest), in)
	}
	c.br = bufio.NewReaderSize(in, 32<<10)
	c.r = wire.NewReader(c.br, wire.DefaultMaxFrame)
	c.startFiles(rest)
	b := c.w.Lock()
	*b = wire.AppendPreface(*b, version)
	err := c.w.Unlock()
	if draining {
		c.goAway()
	}
	if err != nil {
		c.end(err)
		return
	}
	c.readLoop()
}

// readLoop reads frames until the connection ends. A unary call that is
// ready runs at once on this goroutine (no hand-off between the request
// and its handler): alone on the connection, this goroutine reads on
// after it unless the watchdog gave the reading away meanwhile
// (inline.go); else a worker reads on from now. Unary calls whose
// requests came together are gathered and run in turn on this goroutine
// (batch.go), which reads on after them unless the reading was given
// away meanwhile.
func (c *serverConn) readLoop() {
	for {
		if len(c.batch) > 0 && !c.frameBuffered() {
			if c.runBatch() {
				continue
			}
			return
		}
		if err := c.frameDeadline(); err != nil {
			c.end(err)
			return
		}
		h, p, err := c.r.Next()
		if err == nil {
			err = c.frame(h, p)
		}
		if err == nil {
			err = c.strayFiles()
		}
		if err != nil {
			c.end(err)
			return
		}
		st := c.ready
		if st == nil {
			continue
		}
		c.ready = nil
		onReader := c.mayRunOnReader(st)
		if onReader {
			if added, full := c.gather(st); added {
				if full {
					if c.runBatch() {
						continue
					}
					return
				}
				continue
			}
		}
		if len(c.batch) > 0 {
			c.s.workers.run(st) // slow: a worker of its own
			continue
		}
		if onReader && c.mayRunInline(st) {
			if c.runInline(st) {
				continue
			}
			return
		}
		c.s.workers.run(c)
		st.run()
		return
	}
}

// frameDeadline waits, as long as need be, for the next frame to begin;
// once it has, the whole frame must arrive within the handshake timeout,
// so that a peer that stops inside a frame does not hold its connection
// (an idle client, between frames, keeps it).
func (c *serverConn) frameDeadline() error {
	br := c.br
	if br.Buffered() == 0 {
		if c.deadline {
			c.conn.SetReadDeadline(time.Time{})
			c.deadline = false
		}
		if _, err := br.Peek(1); err != nil {
			return err
		}
	}
	if hdr, err := br.Peek(min(br.Buffered(), wire.HeaderSize)); err == nil && len(hdr) == wire.HeaderSize {
		if h, err := wire.ParseHeader(hdr); err == nil && br.Buffered() >= wire.HeaderSize+int(h.Length) {
			return nil // all here: no timer needed
		}
	}
	c.conn.SetReadDeadline(time.Now().Add(c.s.cfg.FrameTimeout))
	c.deadline = true
	return nil
}

// run reads on (a worker's task).
func (c *serverConn) run() { c.readLoop() }

// end closes the connection, waits for its handlers, and forgets it
// (the reader's: it gives back what a CALL in parts held).
func (c *serverConn) end(err error) {
	c.close(err)
	c.blk.Drop()
	c.handlers.Wait()
	for _, h := range c.s.cfg.Stats {
		h.HandleConn(c.statsCtx, &stats.ConnEnd{})
	}
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.connsIdle.Broadcast()
	c.s.mu.Unlock()
	if c.key != "" {
		c.s.releaseCallerBudget(c.key)
	}
	c.endFiles()
}

// close ends the connection: its calls in flight end with err.
func (c *serverConn) close(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if errors.Is(err, wire.ErrProtocol) {
		// Say why before closing; the client fails its calls with it.
		msg := err.Error()
		if len(msg) > 1024 {
			msg = msg[:1024]
		}
		c.writeGoAway(codes.Internal, msg)
	}
	c.closed = true
	streams := make([]*serverStream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	c.mu.Unlock()
	c.logEnd(err)
	c.cancel()
	c.caller.Close()
	for _, st := range streams {
		st.cancel()
		st.in.End(status.Error(codes.Unavailable, "grpcipc: connection closed"))
		st.abandon()
	}
}

// logEnd logs why a connection ended, unless its client simply left.
func (c *serverConn) logEnd(err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) || errors.Is(err, errServerStopped) || sockfile.IsPeerClosed(err) {
		return
	}
	c.caller.Warn("grpcipc: fast-path connection closed", "err", err)
}

// goAway tells the client that no new streams will start, and closes the
// connection once those in flight are done.
func (c *serverConn) goAway() {
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	// Written before anyone can see goingAway and close the connection.
	c.writeGoAway(codes.Unavailable, "grpcipc: the server is stopping")
	idle := len(c.streams) == 0
	c.mu.Unlock()
	if idle {
		c.close(errServerStopped)
	}
}

// writeGoAway sends GOAWAY with the last stream started (c.mu held).
func (c *serverConn) writeGoAway(code codes.Code, msg string) {
	last := c.last
	b := c.w.Lock()
	*b, _ = beginFrameWith(*b, 0, wire.TypeGoAway, 0, func(b []byte) []byte {
		return wire.AppendGoAway(b, &wire.GoAway{LastStream: last, Code: uint32(code), Message: msg})
	})
	c.w.Unlock()
}

// beginFrameWith appends a frame whose payload f appends.
func beginFrameWith(b []byte, stream uint32, t wire.Type, fl wire.Flags, f func([]byte) []byte) ([]byte, int) {
	b, at := wire.BeginFrame(b, stream, t, fl)
	b = f(b)
	wire.EndFrame(b, at)
	return b, at
}

// frame handles one frame from the client.
func (c *serverConn) frame(h wire.Header, p []byte) error {
	if _, _, inParts := c.blk.Pending(); inParts || h.Type == wire.TypeCall {
		if h.Type != wire.TypeCall {
			return fmt.Errorf("%w: a %v frame on stream %d between the parts of a CALL", wire.ErrProtocol, h.Type, h.Stream)
		}
		payload, held, done, err, connErr := c.blk.Add(h, p)
		switch {
		case connErr != nil:
			return connErr
		case !done:
			return nil
		case errors.Is(err, fastio.ErrNoRoom):
			c.logBudget()
			return c.refuseCall(h.Stream, codes.ResourceExhausted, c.budgetMessage())
		case err != nil:
			return c.refuseCall(h.Stream, codes.Internal, fmt.Sprintf("grpcipc: call refused: the request metadata is over the fast path's limit (%d bytes as HTTP/2 counts it): %v", wire.MaxHeaderListSize, err))
		}
		return c.onCall(h.Stream, h.Flags, payload, held)
	}
	switch h.Type {
	case wire.TypeMessage, wire.TypeHalfClose, wire.TypeCancel:
		st, err := c.stream(h.Stream, h.Type)
		if st == nil {
			return err
		}
		switch h.Type {
		case wire.TypeMessage:
			give, serr, err := st.in.Add(h.Flags, p, c.s.cfg.MaxRecv, c)
			if serr == fastio.ErrNoRoom {
				give, serr, err = c.addWaiting(st, h.Flags, p)
			}
			if err != nil {
				return err
			}
			if give > 0 {
				c.window(h.Stream, give)
			}
			if serr != nil {
				st.recvFailed(c.recvError(serr))
			}
		case wire.TypeHalfClose:
			if st.halfClosed {
				return fmt.Errorf("%w: a second HALF_CLOSE on stream %d", wire.ErrProtocol, h.Stream)
			}
			st.halfClosed = true
			if st.in.InParts() {
				st.recvFailed(status.Error(codes.Internal, "grpcipc: the client half-closed the call inside a message"))
				return nil
			}
			st.in.End(nil)
			if st.m != nil && st.m.md != nil && st.started() {
				c.ready = st // readLoop runs it
			}
		case wire.TypeCancel:
			st.cancel()
			st.in.End(status.Error(codes.Canceled, "grpcipc: the client cancelled the call"))
			st.abandon()
		}
		return nil
	case wire.TypeWindow:
		inc, err := wire.ParseWindow(p)
		if err != nil {
			return err
		}
		if h.Stream == 0 {
			return nil // reserved
		}
		if st, _ := c.stream(h.Stream, h.Type); st != nil {
			st.in.Grow(inc)
		}
		return nil
	case wire.TypeFiles:
		return c.onFiles(h, p)
	case wire.TypePing:
		if h.Flags&wire.FlagAck != 0 {
			return nil
		}
		if len(p) != 8 {
			return fmt.Errorf("%w: PING payload of %d bytes, want 8", wire.ErrProtocol, len(p))
		}
		b := c.w.Lock()
		*b = wire.AppendFrame(*b, 0, wire.TypePing, wire.FlagAck, p)
		c.w.Unlock()
		return nil
	}
	return fmt.Errorf("%w: a client sent a %v frame, which only servers send", wire.ErrProtocol, h.Type)
}

// Take and TakeCap hand over the frame reader's buffer (fastio.Taker).
func (c *serverConn) Take(n int) *[]byte { return fastio.ReaderTaker{R: c.r}.Take(n) }

// TakeCap: see Take.
func (c *serverConn) TakeCap() int { return c.r.Cap() }

// stream returns the open stream id, nil for one that has ended, and an
// error for one never opened.
func (c *serverConn) stream(id uint32, t wire.Type) (*serverStream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id > c.seen {
		return nil, fmt.Errorf("%w: %v frame on stream %d, which was never opened", wire.ErrProtocol, t, id)
	}
	return c.streams[id], nil
}

// SendWindow gives n bytes of stream id's window back to the client
// (fastio.WindowSender).
func (c *serverConn) SendWindow(id uint32, n int) { c.window(id, n) }

// window gives n bytes of stream id's window back to the client.
func (c *serverConn) window(id uint32, n int) {
	b := c.w.Lock()
	*b = wire.AppendHeader(*b, wire.Header{Length: wire.WindowSize, Stream: id, Type: wire.TypeWindow})
	*b = wire.AppendWindow(*b, uint32(n))
	c.w.Unlock()
}

func (c *serverConn) remove(st *serverStream) {
	c.mu.Lock()
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	idle := c.goingAway && len(c.streams) == 0
	c.mu.Unlock()
	if idle {
		c.close(errServerStopped)
	}
}

// charge charges n bytes to the connection's budget, waiting for room
// as for messages (fastio.Block's Charge).
func (c *serverConn) charge(n int) bool {
	if c.budget.TryCharge(n) {
		return true
	}
	c.dropBatch() // the calls gathered may hold the room: they run now
	return chargeWaiting(c.budget, c.ctx.Done(), nil, n)
}
