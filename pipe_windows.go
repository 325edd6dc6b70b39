package grpcipc

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/grpcipc/grpcipc/internal/winpipe"
)

// listenPipe serves a named pipe (see [winpipe.Listen]) whose DACL comes
// from the policy (pipeSDDL).
func listenPipe(_ context.Context, ep Endpoint, cfg listenConfig) (net.Listener, error) {
	sddl, err := pipeSDDL(cfg.policy, cfg.self)
	if err != nil {
		return nil, err
	}
	l, err := winpipe.Listen(ep.pipePath(), sddl)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// dialPipe connects at the Anonymous impersonation level unless identify
// asks for Identification (see [winpipe.Dial]).
func dialPipe(ctx context.Context, ep Endpoint, identify bool) (net.Conn, error) {
	return winpipe.Dial(ctx, ep.pipePath(), identify)
}

// pipePath is the Win32 path of a named pipe endpoint.
func (e Endpoint) pipePath() string { return `\\.\pipe\` + e.Address }

// pipeSDDL is the pipe's security descriptor, one access entry at a time:
//
//	D:P                   a protected DACL: nothing inherited
//	(D;;GA;;;NU)          deny everything to network logons (remote
//	                      clients are refused by the pipe flag too)
//	(A;;GA;;;<own SID>)   the server's own user: everything, including
//	                      creating the pipe's further instances
//	(A;;0x12018b;;;<SID>) each other user, group or SID the policy admits:
//	                      read and write data, read attributes and EAs,
//	                      write attributes, read the DACL, synchronize; not
//	                      FILE_CREATE_PIPE_INSTANCE, so no one else can serve
//	                      the name. WD (Everyone) when the policy admits
//	                      anyone or names callers by something other than a
//	                      SID (an executable), the identity check then
//	                      deciding; SY for "root"/"system".
func pipeSDDL(p *Policy, self identity) (string, error) {
	if self.sid == "" {
		return "", errors.New("no SID for this process's user")
	}
	var b strings.Builder
	b.WriteString("D:P(D;;GA;;;NU)(A;;GA;;;" + self.sid + ")")
	seen := map[string]bool{self.sid: true}
	add := func(sid string) {
		if !seen[sid] {
			seen[sid] = true
			b.WriteString("(A;;0x12018b;;;" + sid + ")")
		}
	}
	var visit func(pr Principal)
	visit = func(pr Principal) {
		switch pr.kind {
		case pSameUser:
		case pSystem:
			add("SY")
		case pSID, pUser, pGroup:
			if pr.sid != "" {
				add(pr.sid)
			}
		case pAllOf:
			// All must match: one part bound to an identity bounds who can.
			for _, s := range pr.sub {
				if boundedByIdentity(s) {
					visit(s)
					return
				}
			}
			for _, s := range pr.sub {
				visit(s)
			}
		case pAnyOf:
			for _, s := range pr.sub {
				visit(s)
			}
		default: // *, exe, and Unix ids a Windows peer never has
			if pr.kind == pAny || pr.kind == pExe {
				add("WD")
			}
		}
	}
	for _, r := range p.allow {
		if len(r.Principals) == 0 {
			add("WD")
		}
		for _, pr := range r.Principals {
			visit(pr)
		}
	}
	return b.String(), nil
}
