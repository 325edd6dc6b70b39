package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/sockfile"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What the CLI tells a user who went wrong in a way it can recognise: no
// server at the endpoint, a socket this user may not open, reflection the
// server's policy refuses, a mistyped command.

// notConnected says, for a status error whose connection could not be made
// at all, why, in the user's words: "no server at ENDPOINT (is it
// running?): REASON" when nothing serves there (no socket file, no
// directory, a connection refused, no such pipe), the socket's refusal of
// this user when it is that. It returns nil for any other error, which
// keeps its own words.
//
// A status carries no error chain, so a failed dial (its message says so:
// grpcipc's "connecting to", grpc-go's "Error while dialing") is dialled
// once more, which gives the operating system's reason; that dial is made
// only after one failed, so a live server sees no extra connection, but
// in a race with a server starting up.
func notConnected(ep grpcipc.Endpoint, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	msg := st.Message()
	switch {
	case st.Code() == codes.PermissionDenied && strings.Contains(msg, "refuses this process's user"):
		// grpcipc's words for a socket (or pipe) whose permissions refuse
		// this user: they name the endpoint, the file's owner and mode,
		// and this user.
		return errors.New(strings.TrimPrefix(msg, "grpcipc: "))
	case st.Code() != codes.Unavailable:
		return nil
	case !strings.HasPrefix(msg, "grpcipc: connecting to ") && !strings.Contains(msg, "Error while dialing"):
		return nil // connected, and then failed: the message says how
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, derr := grpcipc.Dial(ctx, ep.String())
	if derr == nil {
		conn.Close() // a server is there now
		return nil
	}
	if reason := absentReason(ep, derr); reason != "" {
		return fmt.Errorf("no server at %s (is it running?): %s", ep, reason)
	}
	if sockfile.IsAccessDenied(derr) {
		if reason := errors.Unwrap(derr); reason != nil {
			derr = reason // the OS's words, without Dial's "grpcipc: connecting to ENDPOINT"
		}
		return fmt.Errorf("permission denied: %s: its permissions refuse this process's user: %w", ep, derr)
	}
	return nil
}

// absentReason says in a few words why dialling ep failed with err when
// it means that no server is there, or returns "".
func absentReason(ep grpcipc.Endpoint, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist) && ep.Transport == grpcipc.Unix:
		dir := filepath.Dir(ep.Address)
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
			return "no directory " + dir
		}
		return "no socket file " + ep.Address
	case errors.Is(err, fs.ErrNotExist) && ep.Transport == grpcipc.NamedPipe:
		return "no pipe of that name"
	case sockfile.IsConnRefused(err) && ep.Transport == grpcipc.Unix:
		return "connection refused (a socket file left by a server that stopped?)"
	case sockfile.IsConnRefused(err):
		return "connection refused"
	}
	return ""
}

// reflectionRefused says, for reflection the server refused with
// PermissionDenied, that its policy did, and how to do without: unless the
// server refused this caller altogether (grpcipc's "is not admitted"),
// when descriptions from files would not help.
func reflectionRefused(ep grpcipc.Endpoint, st *status.Status) error {
	if st.Code() != codes.PermissionDenied || strings.Contains(st.Message(), "is not admitted") {
		return nil
	}
	return fmt.Errorf("%s: reflection refused by the server's policy: pass --proto or --protoset (the server said: %s)",
		ep, strings.TrimPrefix(st.Message(), "grpcipc: "))
}

// commands are the commands run knows, for suggesting one to a user who
// mistyped it.
var commands = []string{"serve", "call", "list", "describe", "endpoint", "demo", "bench", "help", "version"}

// unknownCommand is the usage error for a command that is none of
// commands: it suggests the ones close to what was typed.
func unknownCommand(cmd string) error {
	if s := suggest(cmd, commands); len(s) > 0 {
		return usageErrorf("unknown command %q: did you mean %s?", cmd, strings.Join(s, " or "))
	}
	return usageErrorf("unknown command %q; run grpcipc --help", cmd)
}

// suggest returns the candidates closest to typed, when they are close
// enough to be what was meant, ignoring case: at most one edit (a letter
// added, dropped or changed, or two swapped) from a word of up to five
// letters, two from a longer one; failing that, the one candidate that
// typed begins (three letters or more: "desc") or that begins typed
// ("benchmark").
func suggest(typed string, candidates []string) []string {
	t := strings.ToLower(typed)
	limit := 1
	if len(t) > 5 {
		limit = 2
	}
	var best, prefixed []string
	bestDist := limit
	for _, c := range candidates {
		if len(t) >= 3 && strings.HasPrefix(c, t) || len(c) >= 4 && strings.HasPrefix(t, c) {
			prefixed = append(prefixed, c)
		}
		switch d := editDistance(t, c); {
		case d < bestDist:
			best, bestDist = []string{c}, d
		case d == bestDist:
			best = append(best, c)
		}
	}
	if len(best) == 0 && len(prefixed) == 1 {
		return prefixed
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// the fewest letters inserted, deleted, replaced, or adjacent ones
// swapped, to make one of the other.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
