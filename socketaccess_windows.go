package grpcipc

import (
	"log/slog"
	"reflect"
)

// matchAccess: a named pipe's DACL (or a socket directory's) is made by
// Listen from the policy given to it, and cannot follow the server's
// later; a server whose policy differs from Listen's says so.
func (l *listener) matchAccess(policy *Policy, log *slog.Logger) {
	if l.ep.Transport == TCP {
		return
	}
	listenPolicy := l.policy
	if listenPolicy == nil {
		listenPolicy = SameUserPolicy()
	}
	if listenPolicy == policy || reflect.DeepEqual(listenPolicy, policy) {
		return
	}
	log.Warn("grpcipc: the server's policy differs from the one Listen made the pipe's (or socket directory's) DACL from; callers only the server's policy admits are refused by the DACL: give the policy to Listen too",
		"endpoint", l.ep.String(), "listen_policy", listenPolicy.Name(), "policy", policy.Name())
}
