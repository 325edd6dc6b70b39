package grpcipc

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
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

// namesCgroup says whether a rule of the policy names the caller's
// cgroup (cgroup:, unit:, user-unit:): only then is it read.
func (p *Policy) namesCgroup() bool {
	if p == nil {
		return false
	}
	for _, set := range [][]Rule{p.deny, p.allow} {
		for _, r := range set {
			if slices.ContainsFunc(r.Principals, namesCgroup) {
				return true
			}
		}
	}
	return false
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
