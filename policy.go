package grpcipc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrPolicy is wrapped by every error of [ParsePolicy], [LoadPolicy],
// [NewPolicy] and [ParsePrincipal].
var ErrPolicy = errors.New("invalid policy")

// ErrPermissionDenied is wrapped by the error a refused caller's call
// fails with on the server side, before it becomes codes.PermissionDenied
// at the gRPC boundary, and on the client side by the error of a dial that
// the socket file's permissions (or a pipe's DACL) refused.
var ErrPermissionDenied = errors.New("permission denied")

type principalKind uint8

const (
	pAny principalKind = iota + 1
	pSameUser
	pUID
	pGID
	pUser  // resolved to a uid (Unix) or SID (Windows)
	pGroup // resolved to a gid (Unix) or SID (Windows)
	pSID
	pExe
	pSystem // uid 0, or SYSTEM (S-1-5-18) on Windows
	pAllOf
	pAnyOf
)

// Principal names who a policy rule admits, by the OS identity of the
// calling process. Make one with [SameUser], [Root], [Anyone], [UID],
// [GID], [ParsePrincipal] (from text: users and groups are looked up),
// [AllOf] or [AnyOf].
type Principal struct {
	kind principalKind
	text string // as written, for messages
	id   int    // uid or gid
	sid  string // SID, or a user's or group's SID on Windows
	exe  string
	sub  []Principal
}

// ParsePrincipal parses one principal:
//
//	same-user        the server's own user (the default policy's only principal);
//	                 in a client's WithExpectedServer, the client's own user
//	root, system     uid 0, or on Windows SYSTEM (S-1-5-18)
//	uid:0            effective user ID
//	gid:100          effective or supplementary group ID
//	user:alice       a user, looked up now (an unknown user is an error)
//	group:wheel      member of a group, primary or supplementary, looked up now
//	sid:S-1-5-18     a Windows user or group SID
//	exe:/usr/bin/foo the calling process's executable (Linux, Windows); only
//	                 in an all_of with a user, group, uid, gid, root or SID
//	*                anyone
//
// A principal whose fields the OS did not supply (groups it did not tell,
// an executable it could not read, a caller it could not identify at all)
// is unknown for that caller: it admits no one in an allow rule and
// matches in a deny rule (fail closed). A SID never matches a Unix peer,
// nor a uid a Windows one.
//
// What exe: is for, and what it is not. The executable is read once, when
// the connection is accepted, through a pidfd that pins the very process
// that connected (Linux 6.5+), and compared with the named file by device
// and inode, not by name: a bind mount of another file, a copy or a
// replacement at the same path do not pass for it (a hard link to the very
// file does: it is the same program), and a caller in
// another mount namespace than the server's has no known executable. It
// tells which program a given user is running, to narrow that user's
// rights (say, only mydctl of the admins group may call Reset). It is no
// defence against the same user: a process can connect and then exec the
// allowed file (the server sees the new executable if it reads after the
// exec), another process of that user can inject code into it (ptrace,
// LD_PRELOAD), and an interpreter (/bin/sh, python3) named as the file
// admits any script it runs. That is why exe: alone is refused in an allow
// rule: it would admit every user who can run the file.
func ParsePrincipal(s string) (Principal, error) {
	p, err := parsePrincipal(s)
	if err != nil {
		return Principal{}, fmt.Errorf("grpcipc: %w: principal %q: %s", ErrPolicy, s, err)
	}
	return p, nil
}

// SameUser is the principal of the server's own user, the default
// policy's only one (in a client's [WithExpectedServer], the client's own
// user): ParsePrincipal("same-user"), with no error to check.
func SameUser() Principal { return Principal{kind: pSameUser, text: "same-user"} }

// Root is the principal of uid 0, or on Windows of SYSTEM (S-1-5-18):
// ParsePrincipal("root").
func Root() Principal { return Principal{kind: pSystem, text: "root"} }

// Anyone is the principal every caller matches: ParsePrincipal("*").
func Anyone() Principal { return Principal{kind: pAny, text: "*"} }

// UID is the principal of the effective user ID uid (on Windows it
// matches no one): ParsePrincipal("uid:" + strconv.Itoa(uid)). A uid no
// process can have (negative, or 4294967295 and above) is refused by
// AllowPolicy, NewPolicy and WithExpectedServer.
func UID(uid int) Principal {
	return Principal{kind: pUID, id: uid, text: "uid:" + strconv.Itoa(uid)}
}

// GID is the principal of the members of group gid, effective or
// supplementary (on Windows it matches no one): ParsePrincipal("gid:" +
// strconv.Itoa(gid)). A gid no process can have is refused as UID's is.
func GID(gid int) Principal {
	return Principal{kind: pGID, id: gid, text: "gid:" + strconv.Itoa(gid)}
}

func parsePrincipal(s string) (Principal, error) {
	switch s {
	case "*":
		return Principal{kind: pAny, text: s}, nil
	case "same-user":
		return Principal{kind: pSameUser, text: s}, nil
	case "root", "system":
		return Principal{kind: pSystem, text: s}, nil
	}
	kind, val, ok := strings.Cut(s, ":")
	if !ok {
		return Principal{}, errors.New(`want KIND:VALUE (uid, gid, user, group, sid, exe), "same-user", "root" or "*"`)
	}
	if val == "" {
		return Principal{}, fmt.Errorf("empty %s", kind)
	}
	p := Principal{text: s}
	switch kind {
	case "uid", "gid":
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil || !isDigits(val) {
			return Principal{}, fmt.Errorf("%s %q is not a number", kind, val)
		}
		if n == noID {
			return Principal{}, fmt.Errorf("%s %s is (%s_t)-1, which means \"no %s\" and names no one", kind, val, kind, kind)
		}
		p.kind, p.id = pUID, int(n)
		if kind == "gid" {
			p.kind = pGID
		}
	case "user":
		u, err := user.Lookup(val)
		if err != nil {
			return Principal{}, fmt.Errorf("unknown user %q", val)
		}
		p.kind = pUser
		p.id, p.sid = splitID(u.Uid)
	case "group":
		g, err := user.LookupGroup(val)
		if err != nil {
			return Principal{}, fmt.Errorf("unknown group %q", val)
		}
		p.kind = pGroup
		p.id, p.sid = splitID(g.Gid)
	case "sid":
		if !strings.HasPrefix(strings.ToUpper(val), "S-1-") {
			return Principal{}, fmt.Errorf("%q is not a SID (S-1-...)", val)
		}
		p.kind, p.sid = pSID, strings.ToUpper(val)
	case "exe":
		if !filepath.IsAbs(val) {
			return Principal{}, fmt.Errorf("executable %q is not an absolute path", val)
		}
		p.kind, p.exe = pExe, filepath.Clean(val)
	default:
		return Principal{}, fmt.Errorf("unknown kind %q (want uid, gid, user, group, sid, exe, same-user, root, system or *)", kind)
	}
	return p, nil
}

// checkMade refuses a Principal that names no one by mistake: the zero
// Principal, or a uid or gid that no process can have (UID(-1), say, which
// would still open the socket to others).
func checkMade(p Principal) error {
	switch p.kind {
	case 0:
		return errors.New("the zero Principal names no one (make one with ParsePrincipal, SameUser, Root, UID, GID or Anyone)")
	case pUID, pGID:
		if p.id < 0 || p.id >= noID {
			return fmt.Errorf("%s is not an ID a process can have (0 to %d)", p.text, noID-1)
		}
	case pAllOf, pAnyOf:
		for _, s := range p.sub {
			if err := checkMade(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// noID is (uid_t)-1 and (gid_t)-1: "no id" (as in setresuid's "leave
// unchanged"), never a process's uid or gid.
const noID = 1<<32 - 1

// sidLocalSystem is the SID of Windows' LocalSystem account.
const sidLocalSystem = "S-1-5-18"

// splitID tells a numeric Unix id from a Windows SID.
func splitID(s string) (int, string) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, ""
	}
	return -1, s
}

// AllOf returns a principal that admits a caller only if every one of ps
// does.
func AllOf(ps ...Principal) Principal {
	return Principal{kind: pAllOf, sub: ps, text: joinPrincipals("all_of", ps)}
}

// AnyOf returns a principal that admits a caller if any of ps does.
func AnyOf(ps ...Principal) Principal {
	return Principal{kind: pAnyOf, sub: ps, text: joinPrincipals("any_of", ps)}
}

func joinPrincipals(op string, ps []Principal) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.text
	}
	return op + "(" + strings.Join(parts, ", ") + ")"
}

// String returns the principal as written.
func (p Principal) String() string { return p.text }

// identity is the server's own user, for same-user.
type identity struct {
	uid    int
	hasUID bool
	sid    string
}

// match is the outcome of checking a principal against a caller: yes, no,
// or unknown when the OS did not supply a field the principal needs.
type match uint8

const (
	matchNo match = iota
	matchYes
	matchUnknown
)

func boolMatch(b bool) match {
	if b {
		return matchYes
	}
	return matchNo
}

// matches reports whether p surely admits c: an unknown field never admits.
func (p Principal) matches(c *Creds, self identity) bool {
	return p.eval(c, self) == matchYes
}

// eval checks p against c. A field the OS did not supply gives
// matchUnknown, which an allow rule treats as no and a deny rule as yes
// (fail closed).
func (p Principal) eval(c *Creds, self identity) match {
	if p.kind == pAny {
		return matchYes
	}
	if c == nil {
		return matchUnknown
	}
	unixPeer, windowsPeer := c.info.HasUID, c.info.SID != ""
	if !unixPeer && !windowsPeer && p.kind != pAllOf && p.kind != pAnyOf {
		return matchUnknown // the OS told nothing of who this is
	}
	switch p.kind {
	case pSameUser:
		if unixPeer {
			return boolMatch(self.hasUID && c.info.UID == self.uid)
		}
		return boolMatch(self.sid != "" && strings.EqualFold(c.info.SID, self.sid))
	case pUID:
		return boolMatch(unixPeer && c.info.UID == p.id)
	case pGID:
		if !unixPeer {
			return matchNo
		}
		return c.inGroup(p.id)
	case pUser:
		if p.sid != "" {
			return boolMatch(windowsPeer && strings.EqualFold(c.info.SID, p.sid))
		}
		return boolMatch(unixPeer && c.info.UID == p.id)
	case pGroup:
		if p.sid != "" {
			return c.hasSID(p.sid)
		}
		if !unixPeer {
			return matchNo
		}
		return c.inGroup(p.id)
	case pSID:
		if !windowsPeer {
			return matchNo
		}
		return c.hasSID(p.sid)
	case pSystem:
		if unixPeer {
			return boolMatch(c.info.UID == 0)
		}
		return boolMatch(c.info.SID == sidLocalSystem)
	case pExe:
		return p.evalExe(c)
	case pAllOf:
		out := matchYes
		for _, s := range p.sub {
			switch s.eval(c, self) {
			case matchNo:
				return matchNo
			case matchUnknown:
				out = matchUnknown
			}
		}
		if len(p.sub) == 0 {
			return matchNo
		}
		return out
	case pAnyOf:
		out := matchNo
		for _, s := range p.sub {
			switch s.eval(c, self) {
			case matchYes:
				return matchYes
			case matchUnknown:
				out = matchUnknown
			}
		}
		return out
	}
	return matchNo
}

// evalExe compares the caller's executable, as read when it connected,
// with the file p names, by identity (device and inode), not by name.
func (p Principal) evalExe(c *Creds) match {
	if c.assumeExe {
		return matchYes
	}
	if c.info.Exe == nil {
		return matchUnknown
	}
	want, err := os.Stat(p.exe)
	if err != nil {
		return matchUnknown // the configured file is gone: no one is it
	}
	return boolMatch(c.info.Exe.IsFile(want))
}

func (c *Creds) inGroup(gid int) match {
	if c.info.GID == gid {
		return matchYes
	}
	if !c.info.HasGroups {
		return matchUnknown
	}
	return boolMatch(slices.Contains(c.info.Groups, gid))
}

func (c *Creds) hasSID(sid string) match {
	if strings.EqualFold(c.info.SID, sid) {
		return matchYes
	}
	if !c.info.HasGroupSIDs {
		return matchUnknown
	}
	for _, g := range c.info.GroupSIDs {
		if strings.EqualFold(g, sid) {
			return matchYes
		}
	}
	return matchNo
}

// Rule is one rule of a [Policy]: it applies to a call when the caller
// matches any of Principals (none: anyone) and the method matches any of
// Methods (none: every method).
type Rule struct {
	Name       string
	Principals []Principal
	// Methods are full method names ("/greet.Greeter/SayHello"), a whole
	// service ("/greet.Greeter/*") or "*" for every method.
	Methods []string
}

func (r *Rule) matchesMethod(method string) bool {
	if len(r.Methods) == 0 {
		return true
	}
	for _, m := range r.Methods {
		if m == "*" || m == method || strings.HasSuffix(m, "/*") && strings.HasPrefix(method, m[:len(m)-1]) {
			return true
		}
	}
	return false
}

func (r *Rule) allMethods() bool {
	if len(r.Methods) == 0 {
		return true
	}
	for _, m := range r.Methods {
		if m == "*" {
			return true
		}
	}
	return false
}

// evalCaller checks the caller against the rule's principals (any of them).
func (r *Rule) evalCaller(c *Creds, self identity) match {
	if len(r.Principals) == 0 {
		return matchYes
	}
	out := matchNo
	for _, p := range r.Principals {
		switch p.eval(c, self) {
		case matchYes:
			return matchYes
		case matchUnknown:
			out = matchUnknown
		}
	}
	return out
}

// allows: an allow rule admits only a caller it surely matches.
func (r *Rule) allows(c *Creds, self identity) bool { return r.evalCaller(c, self) == matchYes }

// denies: a deny rule refuses a caller it matches, or may match because a
// field it needs is unknown (fail closed).
func (r *Rule) denies(c *Creds, self identity) (bool, string) {
	switch r.evalCaller(c, self) {
	case matchYes:
		return true, r.Name
	case matchUnknown:
		return true, r.Name + " (the OS did not tell a field this rule needs, so it matches)"
	}
	return false, ""
}

// Policy decides which callers may call which methods, as gRPC's
// authorization policies do (google.golang.org/grpc/authz), on the OS
// identity of the calling process: a call is refused if a deny rule matches
// it, else allowed if an allow rule matches it, else refused.
//
// Give a policy to a server with [WithPolicy] (to [NewServer] or [Listen]:
// once is enough; see WithPolicy). Without one, a server admits only its own
// user ([SameUserPolicy]).
type Policy struct {
	name  string
	deny  []Rule
	allow []Rule
}

// NewPolicy returns a policy of the given rules. Every rule needs a name,
// and every method pattern must be "*", "/package.Service/*" or
// "/package.Service/Method". An allow rule's exe: principal must be
// combined with a user, group, uid, gid, root or SID in an all_of: the
// executable narrows who is admitted, it never admits alone; and a deny
// rule may not name an executable, since a copy of the file dodges it (see
// [ParsePrincipal]). Its error wraps [ErrPolicy] and says which rule is
// wrong and why.
func NewPolicy(name string, deny, allow []Rule) (*Policy, error) {
	return withPrefix(newPolicy(name, deny, allow))
}

// newPolicy is NewPolicy; its error is ErrPolicy's, without "grpcipc: ".
func newPolicy(name string, deny, allow []Rule) (*Policy, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: the policy has no name", ErrPolicy)
	}
	for i, set := range [][]Rule{deny, allow} {
		field := [...]string{"deny_rules", "allow_rules"}[i]
		for j, r := range set {
			if r.Name == "" {
				return nil, fmt.Errorf("%w: %s[%d]: the rule has no name", ErrPolicy, field, j)
			}
			for k, m := range r.Methods {
				if err := checkMethodPattern(m); err != nil {
					return nil, fmt.Errorf("%w: %s[%d].request.paths[%d]: %s", ErrPolicy, field, j, k, err)
				}
			}
			for k, pr := range r.Principals {
				err := checkMade(pr)
				if err == nil {
					err = checkExeBounded(pr)
				}
				if i == 0 && hasExe(pr) {
					err = fmt.Errorf("%s in a deny rule is dodged by running a copy of the file, which is another file; deny by user, group or uid instead", firstExe(pr))
				}
				if err != nil {
					return nil, fmt.Errorf("%w: %s[%d].source.principals[%d]: %s", ErrPolicy, field, j, k, err)
				}
			}
		}
	}
	return &Policy{name: name, deny: deny, allow: allow}, nil
}

func checkMethodPattern(m string) error {
	if m == "*" {
		return nil
	}
	svc, method, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	if !strings.HasPrefix(m, "/") || !ok || svc == "" || method == "" || strings.Contains(method, "/") ||
		strings.Contains(method, "*") && method != "*" || strings.Contains(svc, "*") {
		return fmt.Errorf("%q is not a method pattern: want \"*\", \"/package.Service/*\" or \"/package.Service/Method\"", m)
	}
	return nil
}

// checkExeBounded refuses an allow principal that an executable alone can
// satisfy: anyone who can run a file would be admitted.
func checkExeBounded(p Principal) error {
	if !hasExe(p) || boundedByIdentity(p) {
		return nil
	}
	return fmt.Errorf("%s admits any user who can run the file: combine exe: with a user, group, uid, gid, root or SID, as in {\"all_of\": [\"user:alice\", \"%s\"]}", p.text, firstExe(p))
}

func hasExe(p Principal) bool {
	return p.kind == pExe || slices.ContainsFunc(p.sub, hasExe)
}

func firstExe(p Principal) string {
	if p.kind == pExe {
		return p.text
	}
	for _, s := range p.sub {
		if e := firstExe(s); e != "" {
			return e
		}
	}
	return ""
}

// boundedByIdentity reports whether p admits only callers of some user,
// group or SID, whatever their executable.
func boundedByIdentity(p Principal) bool {
	switch p.kind {
	case pSameUser, pUID, pGID, pUser, pGroup, pSID, pSystem:
		return true
	case pAllOf:
		return slices.ContainsFunc(p.sub, boundedByIdentity)
	case pAnyOf:
		return len(p.sub) > 0 && !slices.ContainsFunc(p.sub, func(s Principal) bool { return !boundedByIdentity(s) })
	}
	return false
}

// SameUserPolicy returns the default policy: only the server's own user may
// call, any method.
func SameUserPolicy() *Policy {
	return &Policy{name: "same-user", allow: []Rule{{Name: "same-user", Principals: []Principal{{kind: pSameUser, text: "same-user"}}}}}
}

// AllowPolicy returns a policy that admits the server's own user and the
// given principals to every method: what the grpcipc command's --allow
// flags build. Its error wraps [ErrPolicy]: a zero Principal, or an exe:
// principal that is not combined with a user, group, uid, gid, root or SID
// (see [ParsePrincipal]).
func AllowPolicy(principals ...Principal) (*Policy, error) {
	ps := []Principal{SameUser()}
	for _, p := range principals {
		if err := checkMade(p); err != nil {
			return nil, fmt.Errorf("grpcipc: %w: %s", ErrPolicy, err)
		}
		if err := checkExeBounded(p); err != nil {
			return nil, fmt.Errorf("grpcipc: %w: %s", ErrPolicy, err)
		}
		ps = append(ps, p)
	}
	return NewPolicy("allow", nil, []Rule{{Name: "allow", Principals: ps}})
}

// Name returns the policy's name.
func (p *Policy) Name() string { return p.name }

// authorize decides a call of method by c. It returns the rule that decided
// ("" when no allow rule matched).
func (p *Policy) authorize(method string, c *Creds, self identity) (bool, string) {
	for i := range p.deny {
		if r := &p.deny[i]; r.matchesMethod(method) {
			if denied, why := r.denies(c, self); denied {
				return false, why
			}
		}
	}
	for i := range p.allow {
		if r := &p.allow[i]; r.matchesMethod(method) && r.allows(c, self) {
			return true, r.Name
		}
	}
	return false, ""
}

// admitsConn reports whether some method may be open to c: false when a
// deny rule for every method matches it, or no allow rule does.
func (p *Policy) admitsConn(c *Creds, self identity) (bool, string) {
	for i := range p.deny {
		if r := &p.deny[i]; r.allMethods() {
			if denied, why := r.denies(c, self); denied {
				return false, why
			}
		}
	}
	for i := range p.allow {
		if r := &p.allow[i]; r.allows(c, self) {
			return true, r.Name
		}
	}
	return false, ""
}

// hasMethodRules reports whether some rule is for some methods only, which
// only the interceptors of [ServerOptions] can enforce.
func (p *Policy) hasMethodRules() bool {
	for _, set := range [][]Rule{p.deny, p.allow} {
		for i := range set {
			if !set[i].allMethods() {
				return true
			}
		}
	}
	return false
}

// socketAccess is the widest access to a socket file the policy's allow
// rules need: only the owner (0600), one group (0660 and that group), or
// everyone (0666), the peer check then deciding who is served.
func (p *Policy) socketAccess(self identity) (mode fs.FileMode, gid int) {
	gids := map[int]bool{}
	world := false
	// classify says whether pr admits only the server's user, or one group.
	classify := func(pr Principal) (isSelf, isGroup bool, gid int) {
		switch pr.kind {
		case pSameUser:
			return true, false, 0
		case pUID, pUser:
			if pr.sid == "" && self.hasUID && pr.id == self.uid {
				return true, false, 0
			}
		case pSystem:
			return true, false, 0 // root passes file permissions anyway
		case pGID, pGroup:
			if pr.sid == "" {
				return false, true, pr.id
			}
		case pSID:
			return true, false, 0 // never matches a Unix peer
		}
		return false, false, 0
	}
	var visit func(pr Principal) // records what pr needs
	visit = func(pr Principal) {
		switch pr.kind {
		case pAnyOf:
			for _, s := range pr.sub {
				visit(s)
			}
			return
		case pAllOf:
			// All must match, so the narrowest part bounds who can.
			for _, s := range pr.sub {
				if isSelf, _, _ := classify(s); isSelf {
					return
				}
			}
			for _, s := range pr.sub {
				if _, isGroup, g := classify(s); isGroup {
					gids[g] = true
					return
				}
			}
			world = true
			return
		}
		isSelf, isGroup, g := classify(pr)
		switch {
		case isSelf:
		case isGroup:
			gids[g] = true
		default:
			world = true
		}
	}
	for _, r := range p.allow {
		if len(r.Principals) == 0 {
			world = true
		}
		for _, pr := range r.Principals {
			visit(pr)
		}
	}
	switch {
	case world || len(gids) > 1:
		return 0o666, -1
	case len(gids) == 1:
		for g := range gids {
			return 0o660, g
		}
	}
	return 0o600, -1
}
