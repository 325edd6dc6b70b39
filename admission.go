package grpcipc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// admission is what admits a listener's callers: the endpoint, the
// policy, the server's own identity and the log budget of each caller.
// Admission is the one word for it: read the caller's OS identity when its
// connection is accepted, apply the policy, and refuse cheaply (an
// admitListener does it for a listener, admissions for the local addresses
// of a grpc.Server made with ServerOptions; an admittedConn is what it
// lets through, and refusals answers those it refuses).
type admission struct {
	ep     Endpoint
	policy *Policy
	self   identity
	log    *slog.Logger
	// logs bounds the lines each caller's connections can have logged.
	logs callerLogs
	// tcp: a tcp endpoint, which has no OS identity and no policy; only
	// TLS-authenticated callers are served, unless tcpOpen.
	tcp, tcpOpen bool
	// cgroup: the policy names callers' cgroups (cgroup:, unit:,
	// user-unit:), so they are read at accept
	cgroup bool
}

// errTCPNeedsAuth is what a tcp connection gets when the server does not
// authenticate clients and WithUnauthenticatedTCP was not given.
var errTCPNeedsAuth = errors.New("grpcipc: refusing a tcp connection: tcp carries no OS identity, and this server does not require TLS client certificates (ServerOptions with WithTLS and tls.RequireAndVerifyClientCert, or WithPins) nor was Listen given WithUnauthenticatedTCP")

// logOK says whether a line about a connection of the caller key (see
// callerKey) may be logged now, and how many of that caller's were left out
// before it. Each caller has its own budget (see logLimiter), so that one
// flooding user cannot hide another's refusals.
func (g *admission) logOK(key string) (bool, int) {
	if g.trustedKey(key) {
		return true, 0 // the server's own user and root are not bounded
	}
	return g.logs.limiter(key).allow(time.Now(), func(n int) {
		g.log.Warn("grpcipc: log lines left out by the rate limit", "endpoint", g.ep.String(), "caller", key, "lines_not_logged", n)
	})
}

// trustedKey: key is the callerKey of the server's own user or root.
func (g *admission) trustedKey(key string) bool {
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
func (g *admission) trusted(c *Creds) bool {
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
func (g *admission) wantExe(c *Creds) bool {
	c.assumeExe = true
	ok, _ := g.policy.admitsConn(c, g.self)
	c.assumeExe = false
	return ok
}

// refuse logs a refused caller with the rule that refused it ("" when no
// allow rule matched) and returns the error the caller gets.
func (g *admission) refuse(method string, c *Creds, rule string) error {
	return g.refuseQuiet(method, c, rule, false)
}

// refuseQuiet is refuse; shed says the connection is closed at once
// because refused callers already hold their share.
func (g *admission) refuseQuiet(method string, c *Creds, rule string, shed bool) error {
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

// admitListener reads the identity of every caller as it is accepted and
// hands over only those the policy admits to some method. The others are
// answered by a small gRPC server of their own, so that their calls fail
// with codes.PermissionDenied and a message rather than a dropped
// connection; what they can hold there is bounded (see [refusalLimits]).
// Callers other than the server's own user and root may hold at most
// maxPerCaller connections. acceptWorkers goroutines accept and decide,
// so that a flood of refused connections drains from the kernel's queue
// as fast as it can.
type admitListener struct {
	net.Listener
	adm          *admission
	maxPerCaller int
	// inline: no listener of its own (ServerOptions' handshake admits
	// connections one by one); refused callers come back marked refused,
	// for the server's interceptors to answer, instead of going to a
	// refusal server.
	inline bool

	mu       sync.Mutex
	refusals *refusals
	closed   bool
	held     int            // refused connections open
	heldBy   map[string]int // of them, by caller (uid or SID)
	openBy   map[string]int // admitted connections open, by caller

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

func newAdmitListener(l net.Listener, g *admission, maxPerCaller int) *admitListener {
	return &admitListener{Listener: l, adm: g, maxPerCaller: maxPerCaller, done: make(chan struct{})}
}

// Accept returns the next admitted connection.
func (l *admitListener) Accept() (net.Conn, error) {
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

func (l *admitListener) acceptLoop() {
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
// returns nil (an inline admitListener returns a refused caller's connection marked
// refused).
func (l *admitListener) admit(c net.Conn) *admittedConn {
	if l.adm.tcp { // no OS identity: the handshake decides
		return &admittedConn{Conn: c, adm: l.adm}
	}
	tuneSocket(c)
	c = rightsDiscarded(c)
	creds, err := readPeerCreds(c, true, l.adm.wantExe, l.adm.cgroup)
	if err != nil {
		if ok, _ := l.adm.logOK("unknown"); ok {
			l.adm.log.Warn("grpcipc: reading the caller's identity", "endpoint", l.adm.ep.String(), "err", err)
		}
		creds = nil
	}
	pc := &admittedConn{Conn: c, creds: creds, adm: l.adm}
	ok, rule := l.adm.policy.admitsConn(creds, l.adm.self)
	if !ok {
		return l.refuse(pc, rule)
	}
	if l.maxPerCaller <= 0 || l.adm.trusted(creds) {
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
		if ok, skipped := l.adm.logOK(key); ok {
			attrs := []any{"endpoint", l.adm.ep.String(), "caller", creds.String(), "limit", l.maxPerCaller}
			if skipped > 0 {
				attrs = append(attrs, "lines_not_logged", skipped)
			}
			l.adm.log.Warn("grpcipc: connection closed: the caller holds its limit of open connections", attrs...)
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
// once when refused callers already hold their share. An inline one
// returns it marked refused instead, for its server to answer.
func (l *admitListener) refuse(c *admittedConn, rule string) *admittedConn {
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
		if l.refusals == nil && !l.inline {
			l.refusals = newRefusals(l.Listener.Addr())
		}
	}
	r := l.refusals
	l.mu.Unlock()
	l.adm.refuseQuiet("", c.creds, rule, shed && !closed)
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
	r.take(&refusedConn{admittedConn: c, done: func() { l.release(key) }})
	return nil
}

func (l *admitListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held--
	if l.heldBy[key]--; l.heldBy[key] <= 0 {
		delete(l.heldBy, key)
	}
}

func (l *admitListener) Close() error {
	var err error
	if l.Listener != nil {
		err = l.Listener.Close()
	}
	l.mu.Lock()
	r := l.refusals
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

// admitting makes the admitListener that checks l's connections.
func (s *Server) admitting(ep Endpoint, l net.Listener, policy *Policy) (*admitListener, error) {
	g, err := newAdmission(&s.cfg, ep)
	if err != nil {
		return nil, err
	}
	if !g.tcp {
		g.policy = policy
	}
	max := s.cfg.maxPerCaller
	if ep.Transport == TCP {
		max = 0
	}
	return newAdmitListener(l, g, max), nil
}

// newAdmission makes the admission of a listener of ep.
func newAdmission(cfg *serverConfig, ep Endpoint) (*admission, error) {
	if ep.Transport == TCP {
		g := &admission{ep: ep, log: cfg.logger, tcp: true, tcpOpen: cfg.unauthenticatedTCP}
		if g.tcpOpen {
			g.log.Warn("grpcipc: serving tcp without client authentication (WithUnauthenticatedTCP): every process that can reach the port may call, as no one",
				"endpoint", ep.String())
		}
		return g, nil
	}
	self, err := selfIdentity()
	if err != nil {
		return nil, fmt.Errorf("grpcipc: serve %s: %w", ep, err)
	}
	return &admission{ep: ep, policy: cfg.policy, self: self, log: cfg.logger, cgroup: cfg.policy.namesCgroup()}, nil
}

// admissions are the admitListeners of a grpc.Server made with
// ServerOptions, one per local address it serves, without listeners of
// their own.
type admissions struct {
	cfg *serverConfig
	mu  sync.Mutex
	by  map[string]*admitListener
}

// of returns the admitListener of c's local address.
func (g *admissions) of(c net.Conn) (*admitListener, error) {
	addr := c.LocalAddr()
	key := addr.Network() + " " + addr.String()
	g.mu.Lock()
	defer g.mu.Unlock()
	if pl, ok := g.by[key]; ok {
		return pl, nil
	}
	ep := endpointOfAddr(addr)
	gd, err := newAdmission(g.cfg, ep)
	if err != nil {
		return nil, err
	}
	max := g.cfg.maxPerCaller
	if ep.Transport == TCP {
		max = 0
	}
	pl := newAdmitListener(nil, gd, max)
	pl.inline = true
	if g.by == nil {
		g.by = map[string]*admitListener{}
	}
	g.by[key] = pl
	return pl, nil
}
