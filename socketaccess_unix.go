//go:build unix

package grpcipc

import (
	"fmt"
	"log/slog"

	"github.com/grpcipc/grpcipc/internal/sockfile"
)

// matchAccess makes the socket file's permissions agree with policy, the
// one the server checks this listener's callers with (see
// [Server.listenerPolicy]).
func (l *listener) matchAccess(policy *Policy, log *slog.Logger) {
	sock, ok := l.Listener.(*sockfile.Listener)
	if !ok {
		return // no file: an abstract socket, an inherited one
	}
	want, wantGID := policy.socketAccess(l.self)
	mode, gid, err := sock.Access()
	if err != nil {
		log.Warn("grpcipc: cannot read the socket file's permissions", "endpoint", l.ep.String(), "err", err)
		return
	}
	if mode == want && (wantGID < 0 || gid == wantGID) {
		return
	}
	if l.policy == nil && !l.modeSet {
		// Listen chose them by default: the server's policy says.
		if err := sock.SetAccess(want, wantGID); err != nil {
			log.Warn("grpcipc: cannot give the socket file the permissions the server's policy needs; callers it admits may be refused by the file",
				"endpoint", l.ep.String(), "policy", policy.Name(), "mode", fmt.Sprintf("%04o", want), "err", err)
			return
		}
		log.Debug("grpcipc: the socket file's permissions follow the server's policy", "endpoint", l.ep.String(),
			"policy", policy.Name(), "mode", fmt.Sprintf("%04o", want), "group", wantGID)
		return
	}
	by := "WithSocketMode"
	if !l.modeSet {
		by = fmt.Sprintf("the policy %q given to Listen", l.policy.Name())
	}
	narrower := want&^mode != 0 || wantGID >= 0 && gid != wantGID && mode&0o007 == 0
	what := "the file lets in callers the policy refuses (the server still refuses them)"
	if narrower {
		what = "callers the policy admits are refused by the file before the server sees them"
	}
	log.Warn("grpcipc: the socket file's permissions differ from what the server's policy needs: "+what,
		"endpoint", l.ep.String(), "socket_mode", fmt.Sprintf("%04o", mode), "socket_group", gid, "set_by", by,
		"policy", policy.Name(), "policy_needs_mode", fmt.Sprintf("%04o", want), "policy_needs_group", groupOrNone(wantGID))
}

// groupOrNone is a group for a log line: -1 is "none".
func groupOrNone(gid int) any {
	if gid < 0 {
		return "none"
	}
	return gid
}
