package grpcipc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpcipc/grpcipc/internal/fastpath"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/tap"
)

// guard is a listener's policy and what applying it needs.
type guard struct {
	ep     Endpoint
	policy *Policy
	self   identity
	log    *slog.Logger
	// logs bounds the lines each caller's connections can have logged.
	logs callerLogs
	// tcp: a tcp endpoint, which has no OS identity and no policy; only
	// TLS-authenticated callers are served, unless tcpOpen.
	tcp, tcpOpen bool
}

// errTCPNeedsAuth is what a tcp connection gets when the server does not
// authenticate clients and WithUnauthenticatedTCP was not given.
var errTCPNeedsAuth = errors.New("grpcipc: refusing a tcp connection: tcp carries no OS identity, and this server does not require TLS client certificates (ServerOptions with WithTLS and tls.RequireAndVerifyClientCert, or WithPins) nor was Listen given WithUnauthenticatedTCP")

// logOK says whether a line about a connection of the caller key (see
// callerKey) may be logged now, and how many of that caller's were left out
// before it. Each caller has its own budget (see logLimiter), so that one
// flooding user cannot hide another's refusals.
func (g *guard) logOK(key string) (bool, int) {
	if g.trustedKey(key) {
		return true, 0 // the server's own user and root are not bounded
	}
	return g.logs.limiter(key).allow(time.Now(), func(n int) {
		g.log.Warn("grpcipc: log lines left out by the rate limit", "endpoint", g.ep.String(), "caller", key, "lines_not_logged", n)
	})
}

// trustedKey: key is the callerKey of the server's own user or root.
func (g *guard) trustedKey(key string) bool {
	switch {
	case key == "uid:0" || key == "sid:"+sidLocalSystem:
		return true
	case g.self.hasUID:
		return key == "uid:"+strconv.Itoa(g.self.uid)
	case g.self.sid != "":
		return key == "sid:"+strings.ToUpper(g.self.sid)
	}
	return false
}

// callerLogs holds a log budget per caller, for up to maxLogCallers
// callers; those beyond share one.
type callerLogs struct {
	mu sync.Mutex
	by map[string]*logLimiter
}

const maxLogCallers = 1024

func (c *callerLogs) limiter(key string) *logLimiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil {
		c.by = map[string]*logLimiter{}
	}
	if l, ok := c.by[key]; ok {
		return l
	}
	if len(c.by) >= maxLogCallers {
		key = "other callers"
		if l, ok := c.by[key]; ok {
			return l
		}
	}
	l := &logLimiter{}
	c.by[key] = l
	return l
}

// trusted: the server's own user and root, who are never bounded.
func (g *guard) trusted(c *Creds) bool {
	if c == nil {
		return false
	}
	if c.info.HasUID {
		return c.info.UID == 0 || g.self.hasUID && c.info.UID == g.self.uid
	}
	return c.info.SID != "" && (strings.EqualFold(c.info.SID, g.self.sid) || c.info.SID == sidLocalSystem)
}

// wantExe says whether a caller's executable must be read: only if the
// policy could admit it (to some method) were its executable the one an
// exe: principal names, so that a caller refused on its uid costs no reads
// of /proc. Deny rules name no executable (NewPolicy refuses that).
func (g *guard) wantExe(c *Creds) bool {
	c.assumeExe = true
	ok, _ := g.policy.admitsConn(c, g.self)
	c.assumeExe = false
	return ok
}

// refuse logs a refused caller with the rule that refused it ("" when no
// allow rule matched) and returns the error the caller gets.
func (g *guard) refuse(method string, c *Creds, rule string) error {
	return g.refuseQuiet(method, c, rule, false)
}

// refuseQuiet is refuse; shed says the connection is closed at once
// because refused callers already hold their share.
func (g *guard) refuseQuiet(method string, c *Creds, rule string, shed bool) error {
	if rule == "" {
		rule = "(no allow rule matched)"
	}
	if ok, skipped := g.logOK(callerKey(c)); ok {
		attrs := []any{"endpoint", g.ep.String(), "caller", c.String(), "policy", g.policy.name, "rule", rule}
		if c != nil {
			if exe, ok := c.Executable(); ok {
				attrs = append(attrs, "executable", exe)
			}
		}
		if skipped > 0 {
			attrs = append(attrs, "lines_not_logged", skipped)
		}
		if shed {
			attrs = append(attrs, "closed_at_once", "too many refused connections open")
		}
		if method != "" {
			attrs = append(attrs, "method", method)
			g.log.Warn("grpcipc: call refused", attrs...)
		} else {
			g.log.Warn("grpcipc: connection refused", attrs...)
		}
	}
	return &RefusedError{Caller: c.String(), Method: method}
}

// peerConn is an accepted connection with its peer's identity. Until the
// client's HTTP/2 preface has arrived whole, it watches the bytes read, to
// log one clear line for a client that sends something else, stops short,
// or sends nothing at all.
type peerConn struct {
	net.Conn
	creds      *Creds
	guard      *guard
	handshaken atomic.Bool
	encrypted  bool // TLS: the preface is inside it, not seen here

	watched   atomic.Bool // the preface arrived or its problem was logged
	mu        sync.Mutex
	preface   int  // bytes of the client preface seen so far
	prefaceOK bool // the whole preface arrived
	reported  bool // a problem with it was logged
	closed    bool

	onClose func() // gives back the caller's share of connections, if set

	// pending: bytes the server read to tell the protocols apart, which
	// Read returns first. Set before the connection is handed on.
	pending []byte
	// refused: the policy admits this caller to no method; a server made
	// with ServerOptions answers its calls with PermissionDenied.
	refused bool
	// refusedUntil: a refused connection is closed by then.
	refusedUntil time.Time
	// ai: the caller's AuthInfo on the fast path (fastAuthInfo), set
	// before the connection is served.
	ai *AuthInfo
}

// logKey is the caller key of the connection's log lines: tcp callers
// have no identity and share one.
func (c *peerConn) logKey() string {
	if c.guard.tcp {
		return "tcp"
	}
	return callerKey(c.creds)
}

// http2Preface is what every HTTP/2 client sends first (RFC 9113, 3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (c *peerConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		if !c.watched.Load() && !c.encrypted && c.handshaken.Load() {
			c.watchPreface(b[:n], nil)
		}
		return n, nil
	}
	n, err := c.Conn.Read(b)
	if !c.watched.Load() && !c.encrypted && c.handshaken.Load() {
		c.watchPreface(b[:n], err)
	}
	return n, err
}

func (c *peerConn) watchPreface(b []byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prefaceOK || c.reported {
		return
	}
	for _, x := range b {
		if c.preface == len(http2Preface) {
			break
		}
		if x != http2Preface[c.preface] {
			if c.preface == 0 && bytes.HasPrefix(b, []byte(wire.Magic)) {
				// A grpcipc client offering the fast path to a plain
				// grpc.Server: it reconnects speaking HTTP/2.
				c.reportLocked("a grpcipc client offered the fast path, which this server (a grpc.Server) does not speak; it falls back to HTTP/2", slog.LevelDebug)
				return
			}
			c.reportLocked("its first bytes are neither HTTP/2's preface nor grpcipc's", slog.LevelWarn,
				"first_bytes", fmt.Sprintf("%q", b[:min(len(b), 16)]))
			return
		}
		c.preface++
	}
	if c.preface == len(http2Preface) {
		c.prefaceOK = true
		c.watched.Store(true)
	} else if err != nil && !c.closed {
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		c.reportLocked(c.prefaceProblem(timeout))
	}
}

// prefaceProblem says how the client's preface fell short. A client that
// connects and hangs up without a byte is what a liveness probe does (a
// second server checking whether the socket is live before it replaces
// it, a health checker): that is logged at debug level only.
func (c *peerConn) prefaceProblem(timeout bool) (string, slog.Level) {
	switch {
	case c.preface > 0:
		return fmt.Sprintf("the HTTP/2 preface stopped after %d bytes", c.preface), slog.LevelWarn
	case timeout:
		return "nothing received before the handshake timeout", slog.LevelWarn
	}
	return "the client hung up without sending anything (a liveness probe does that)", slog.LevelDebug
}

func (c *peerConn) reportLocked(why string, level slog.Level, attrs ...any) {
	c.reported = true
	c.watched.Store(true)
	if !c.guard.log.Enabled(context.Background(), level) {
		return
	}
	ok, skipped := c.guard.logOK(c.logKey())
	if !ok {
		return
	}
	if skipped > 0 {
		attrs = append(attrs, "lines_not_logged", skipped)
	}
	c.guard.log.Log(context.Background(), level, "grpcipc: connection dropped: "+why,
		append([]any{"endpoint", c.guard.ep.String(), "caller", c.creds.String()}, attrs...)...)
}

func (c *peerConn) Close() error {
	c.mu.Lock()
	if !c.encrypted && c.handshaken.Load() && !c.prefaceOK && !c.reported && !c.closed {
		c.reportLocked(c.prefaceProblem(false))
	}
	first := !c.closed
	c.closed = true
	c.mu.Unlock()
	err := c.Conn.Close()
	if first && c.onClose != nil {
		c.onClose()
	}
	return err
}

// policyListener reads the identity of every caller as it is accepted and
// hands over only those the policy admits to some method. The others are
// answered by a small gRPC server of their own, so that their calls fail
// with codes.PermissionDenied and a message rather than a dropped
// connection; what they can hold there is bounded (see [refusalLimits]).
// Callers other than the server's own user and root may hold at most
// maxPerCaller connections. acceptWorkers goroutines accept and decide,
// so that a flood of refused connections drains from the kernel's queue
// as fast as it can.
type policyListener struct {
	net.Listener
	guard        *guard
	maxPerCaller int
	// inline: no listener of its own (ServerOptions' handshake admits
	// connections one by one); refused callers come back marked refused,
	// for the server's interceptors to answer, instead of going to a
	// refusal server.
	inline bool

	mu      sync.Mutex
	refuser *refuser
	closed  bool
	held    int            // refused connections open
	heldBy  map[string]int // of them, by caller (uid or SID)
	openBy  map[string]int // admitted connections open, by caller

	start sync.Once
	ready chan net.Conn
	errs  chan error
	done  chan struct{}
	wg    sync.WaitGroup
}

// refusalLimits bound what refused callers cost the server. A refused
// connection holds one descriptor (the peer's identity is read at accept
// and holds none) until its PermissionDenied reply is sent or
// refusalDeadline passes; beyond refusedTotal such connections, or
// refusedPerCaller from one uid (or SID), a refused connection is closed at
// once, without a reply.
const (
	refusedTotal     = 256
	refusedPerCaller = 32
	refusalDeadline  = time.Second
)

// acceptWorkers is how many goroutines accept a listener's connections.
const acceptWorkers = 4

func newPolicyListener(l net.Listener, g *guard, maxPerCaller int) *policyListener {
	return &policyListener{Listener: l, guard: g, maxPerCaller: maxPerCaller, done: make(chan struct{})}
}

// Accept returns the next admitted connection.
func (l *policyListener) Accept() (net.Conn, error) {
	l.start.Do(func() {
		l.ready = make(chan net.Conn)
		l.errs = make(chan error)
		for range acceptWorkers {
			l.wg.Add(1)
			go l.acceptLoop()
		}
	})
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *policyListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				continue // the caller decides how long to wait
			}
			return
		}
		pc := l.admit(c)
		if pc == nil {
			continue
		}
		select {
		case l.ready <- pc:
		case <-l.done:
			pc.Close()
			return
		}
	}
}

// isTemporary: an accept error worth retrying (EMFILE, ECONNABORTED).
func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// admit reads the caller's identity and returns its connection if the
// policy and the per-caller bound admit it, else answers or closes it and
// returns nil (an inline gate returns a refused caller's connection marked
// refused).
func (l *policyListener) admit(c net.Conn) *peerConn {
	if l.guard.tcp { // no OS identity: the handshake decides
		return &peerConn{Conn: c, guard: l.guard}
	}
	tuneSocket(c)
	c = guardReads(c)
	creds, err := readPeerCreds(c, true, l.guard.wantExe)
	if err != nil {
		if ok, _ := l.guard.logOK("unknown"); ok {
			l.guard.log.Warn("grpcipc: reading the caller's identity", "endpoint", l.guard.ep.String(), "err", err)
		}
		creds = nil
	}
	pc := &peerConn{Conn: c, creds: creds, guard: l.guard}
	ok, rule := l.guard.policy.admitsConn(creds, l.guard.self)
	if !ok {
		return l.refuse(pc, rule)
	}
	if l.maxPerCaller <= 0 || l.guard.trusted(creds) {
		return pc
	}
	key := callerKey(creds)
	l.mu.Lock()
	if l.openBy == nil {
		l.openBy = map[string]int{}
	}
	full := l.openBy[key] >= l.maxPerCaller
	if !full {
		l.openBy[key]++
	}
	l.mu.Unlock()
	if full {
		if ok, skipped := l.guard.logOK(key); ok {
			attrs := []any{"endpoint", l.guard.ep.String(), "caller", creds.String(), "limit", l.maxPerCaller}
			if skipped > 0 {
				attrs = append(attrs, "lines_not_logged", skipped)
			}
			l.guard.log.Warn("grpcipc: connection closed: the caller holds its limit of open connections", attrs...)
		}
		pc.reported = true
		pc.Close()
		return nil
	}
	pc.onClose = func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.openBy[key]--; l.openBy[key] <= 0 {
			delete(l.openBy, key)
		}
	}
	return pc
}

// callerKey tells callers apart for the per-caller bound.
func callerKey(c *Creds) string {
	switch {
	case c == nil:
		return "unknown"
	case c.info.HasUID:
		return "uid:" + strconv.Itoa(c.info.UID)
	case c.info.SID != "":
		return "sid:" + strings.ToUpper(c.info.SID)
	}
	return "unknown"
}

// refuse hands a refused connection to the refusal server, or closes it at
// once when refused callers already hold their share. An inline gate
// returns it marked refused instead, for its server to answer.
func (l *policyListener) refuse(c *peerConn, rule string) *peerConn {
	c.handshaken.Store(true) // the refusal server's own handshake is grpcipc's
	c.reported = true        // one line per refused connection: the refusal
	key := callerKey(c.creds)
	l.mu.Lock()
	closed := l.closed
	shed := closed || l.held >= refusedTotal || l.heldBy[key] >= refusedPerCaller
	if !shed {
		l.held++
		if l.heldBy == nil {
			l.heldBy = map[string]int{}
		}
		l.heldBy[key]++
		if l.refuser == nil && !l.inline {
			l.refuser = newRefuser(l.Listener.Addr())
		}
	}
	r := l.refuser
	l.mu.Unlock()
	l.guard.refuseQuiet("", c.creds, rule, shed && !closed)
	if shed {
		c.Close()
		return nil
	}
	c.refusedUntil = time.Now().Add(refusalDeadline)
	c.SetDeadline(c.refusedUntil)
	if l.inline {
		var once sync.Once
		c.refused = true
		c.onClose = func() { once.Do(func() { l.release(key) }) }
		return c
	}
	r.take(&refusedConn{peerConn: c, done: func() { l.release(key) }})
	return nil
}

func (l *policyListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held--
	if l.heldBy[key]--; l.heldBy[key] <= 0 {
		delete(l.heldBy, key)
	}
}

func (l *policyListener) Close() error {
	var err error
	if l.Listener != nil {
		err = l.Listener.Close()
	}
	l.mu.Lock()
	r := l.refuser
	first := !l.closed
	l.closed = true
	l.mu.Unlock()
	if first {
		close(l.done)
	}
	l.start.Do(func() {}) // no workers start after Close; those started end
	l.wg.Wait()
	if r != nil {
		r.stop()
	}
	return err
}

// refusedConn is a refused connection that gives back its share of the
// refusal bounds when it closes.
type refusedConn struct {
	*peerConn
	once sync.Once
	done func()
}

func (c *refusedConn) Close() error {
	err := c.peerConn.Close()
	c.once.Do(c.done)
	return err
}

// refuser answers refused callers: those that offer grpcipc's fast path
// on the fast path (answerRefusedFast), the others through a gRPC server
// of its own, over HTTP/2.
type refuser struct {
	srv   *grpc.Server
	conns chan net.Conn // for srv
	done  chan struct{}
	addr  net.Addr
	wg    sync.WaitGroup
	once  sync.Once

	mu      sync.Mutex
	sniffed map[*refusedConn]bool // connections whose first bytes are read, or that hear the fast path
	stopped bool
}

func newRefuser(addr net.Addr) *refuser {
	r := &refuser{conns: make(chan net.Conn, refusedTotal), done: make(chan struct{}), addr: addr, sniffed: map[*refusedConn]bool{}}
	r.srv = grpc.NewServer(
		grpc.Creds(&transportCreds{}),
		// Every call is refused as its headers arrive: no stream, no
		// handler, none of its bytes read.
		grpc.InTapHandle(func(ctx context.Context, _ *tap.Info) (context.Context, error) {
			return ctx, refusedConnError(ctx)
		}),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			return refusedConnError(ss.Context())
		}),
		grpc.MaxConcurrentStreams(4),
		grpc.ConnectionTimeout(refusalDeadline),
		grpc.ReadBufferSize(4<<10), grpc.WriteBufferSize(4<<10),
		grpc.MaxRecvMsgSize(1<<10),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: refusalDeadline, MaxConnectionAge: refusalDeadline, MaxConnectionAgeGrace: refusalDeadline / 2,
		}),
	)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.srv.Serve(chanListener{r})
	}()
	return r
}

// refusedConnError is the error of every call on a refused connection.
func refusedConnError(ctx context.Context) error {
	ai, _ := AuthInfoFromContext(ctx)
	var c *Creds
	if ai != nil {
		c = ai.Peer
	}
	return &RefusedError{Caller: c.String()}
}

// take answers a refused connection, on a goroutine of its own until its
// first bytes tell the protocol: the fast path is answered there, HTTP/2
// goes to the gRPC server.
func (r *refuser) take(c *refusedConn) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		c.Close()
		return
	}
	r.sniffed[c] = true
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		h2 := answerRefused(c.peerConn)
		r.mu.Lock()
		delete(r.sniffed, c)
		h2 = h2 && !r.stopped
		if h2 {
			select {
			case r.conns <- c:
			default:
				h2 = false // cannot happen: the bounds keep fewer open than the queue holds
			}
		}
		r.mu.Unlock()
		if !h2 {
			c.Close()
		}
	}()
}

func (r *refuser) stop() {
	r.mu.Lock()
	r.stopped = true
	for c := range r.sniffed {
		c.peerConn.Conn.Close() // its goroutine ends, and closes it again
	}
	r.mu.Unlock()
	r.once.Do(func() { close(r.done) })
	r.srv.Stop()
	r.wg.Wait()
	for {
		select {
		case c := <-r.conns:
			c.Close()
		default:
			return
		}
	}
}

// chanListener hands the refusal server the connections given to take.
type chanListener struct{ r *refuser }

func (l chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.r.conns:
		return c, nil
	case <-l.r.done:
		return nil, net.ErrClosed
	}
}

func (l chanListener) Close() error {
	l.r.once.Do(func() { close(l.r.done) })
	return nil
}

func (l chanListener) Addr() net.Addr { return l.r.addr }

// logLimiter lets through a burst of logLimitBurst lines, then one every
// logLimitEvery, counting the lines it holds back so that the next line
// can say how many.
type logLimiter struct {
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	skipped int
	timer   bool // a flush of the count is due
}

const (
	logLimitBurst = 20
	logLimitEvery = 100 * time.Millisecond
)

// allow says whether a line may be logged now, and how many were held back
// since the last one. When it holds one back, flush is called a second
// later with the count, unless a line logged by then carried it.
func (l *logLimiter) allow(now time.Time, flush func(int)) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = logLimitBurst
	} else {
		l.tokens = min(logLimitBurst, l.tokens+float64(now.Sub(l.last))/float64(logLimitEvery))
	}
	l.last = now
	if l.tokens < 1 {
		l.skipped++
		if !l.timer && flush != nil {
			l.timer = true
			time.AfterFunc(time.Second, func() {
				l.mu.Lock()
				n := l.skipped
				l.skipped, l.timer = 0, false
				l.mu.Unlock()
				if n > 0 {
					flush(n)
				}
			})
		}
		return false, 0
	}
	l.tokens--
	skipped := l.skipped
	l.skipped = 0
	return true, skipped
}

// answerRefused reads a refused connection's first bytes (its deadline
// set) and, when a grpcipc client offered the fast path, answers its calls
// there with the refusal (fastpath.AnswerRefused), so that it connects
// once and its refusal is logged once. h2 says the connection is left for
// the HTTP/2 refusal, what was read in pc.pending; otherwise it was
// answered, or is of no use (closed, silent, a broken preface, or HTTP/2's
// preface stopped short by the deadline, which the refusal server's
// handshake would give as long again), and the caller closes it.
func answerRefused(pc *peerConn) (h2 bool) {
	f := fastpath.Sniff(pc.Conn)
	switch {
	case len(f.Read) == 0 || f.Broken:
		return false
	case f.Fast:
		msg := (&RefusedError{Caller: pc.creds.String()}).Error()
		// A tenth of the time is kept for the GOAWAY that ends it.
		fastpath.AnswerRefused(pc.Conn, f.Rest, f.Version, msg, pc.refusedUntil.Add(-refusalDeadline/10), pc.refusedUntil)
		return false
	case f.Err != nil:
		return false
	}
	pc.pending = f.Read
	return true
}
