package grpcipc

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/grpcipc/grpcipc/internal/peercred"
)

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
	pCgroup   // the caller's cgroup v2 path is this one or below it (Linux)
	pUnit     // the caller runs in this systemd system unit (Linux)
	pUserUnit // the caller runs in this unit of its own user's manager (Linux)
	pLabel    // the caller's socket has this security module label (Linux)
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
	path string // a cgroup path, or a unit's name
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
//	cgroup:/system.slice/backup.service
//	                 the caller's cgroup v2 path is this one or below it,
//	                 compared by path components (Linux)
//	unit:backup.service
//	                 the caller runs in this systemd system unit (Linux)
//	user-unit:app.service
//	                 the caller runs in this unit of its own user's
//	                 systemd manager, user@UID.service with its uid (Linux)
//	label:CONTEXT    the security context the Linux security module gave
//	                 the caller's socket (SO_PEERSEC): SELinux's whole
//	                 context, or AppArmor's profile (with or without its
//	                 " (enforce)" mode); unknown where no module labels
//	                 sockets
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
		return Principal{}, errors.New(`want KIND:VALUE (uid, gid, user, group, sid, exe, cgroup, unit, user-unit, label), "same-user", "root" or "*"`)
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
	case "cgroup":
		if !strings.HasPrefix(val, "/") || path.Clean(val) != val {
			return Principal{}, fmt.Errorf("cgroup %q is not a clean absolute path of the cgroup v2 hierarchy (/system.slice/backup.service)", val)
		}
		p.kind, p.path = pCgroup, val
	case "label":
		if strings.ContainsAny(val, "\x00\n") {
			return Principal{}, fmt.Errorf("label %q holds a NUL or a newline", val)
		}
		p.kind, p.path = pLabel, val
	case "unit", "user-unit":
		if !peercred.IsUnitName(val) {
			return Principal{}, fmt.Errorf("%s %q is not the name of a systemd unit that runs processes (backup.service, foo.scope)", kind, val)
		}
		p.kind, p.path = pUnit, val
		if kind == "user-unit" {
			p.kind = pUserUnit
		}
	default:
		return Principal{}, fmt.Errorf("unknown kind %q (want uid, gid, user, group, sid, exe, cgroup, unit, user-unit, label, same-user, root, system or *)", kind)
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
		if p.id < 0 || int64(p.id) >= noID {
			return fmt.Errorf("%s is not an ID a process can have (0 to %d)", p.text, int64(noID-1))
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
	case pCgroup, pUnit, pUserUnit:
		return p.evalCgroup(c)
	case pLabel:
		return p.evalLabel(c)
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

// evalCgroup checks the caller's cgroup v2 path, as read when it
// connected, against a cgroup:, unit: or user-unit: principal.
func (p Principal) evalCgroup(c *Creds) match {
	if c.assumeWorkload {
		return matchYes
	}
	cg := c.info.Cgroup
	if cg == "" {
		return matchUnknown
	}
	switch p.kind {
	case pCgroup:
		return boolMatch(p.path == "/" || cg == p.path || strings.HasPrefix(cg, p.path+"/"))
	case pUnit:
		system, _, _, _ := peercred.Units(cg)
		return boolMatch(system == p.path)
	}
	_, user, uid, ok := peercred.Units(cg)
	return boolMatch(ok && user == p.path && c.info.HasUID && c.info.UID == uid)
}

// evalLabel compares the caller's socket's security label, as recorded
// when it connected, with p's: whole, or AppArmor's profile without its
// " (mode)".
func (p Principal) evalLabel(c *Creds) match {
	if c.assumeWorkload {
		return matchYes
	}
	l := c.info.Label
	if l == "" {
		return matchUnknown
	}
	if l == p.path {
		return matchYes
	}
	if i := strings.LastIndex(l, " ("); i > 0 && strings.HasSuffix(l, ")") {
		return boolMatch(l[:i] == p.path)
	}
	return matchNo
}

// namesCgroup says whether p needs the caller's workload identity: its
// cgroup, or its security label.
func namesCgroup(p Principal) bool {
	switch p.kind {
	case pCgroup, pUnit, pUserUnit, pLabel:
		return true
	}
	return slices.ContainsFunc(p.sub, namesCgroup)
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
