package grpcipc

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUntrustedServer is wrapped by the error of a connection whose server
// failed the check asked for with [WithExpectedServer].
var ErrUntrustedServer = errors.New("untrusted server")

// ServerIdentityError says why a server failed [WithExpectedServer]'s
// check: who was expected and what was found.
type ServerIdentityError struct {
	Endpoint string   // the endpoint dialed
	Expected []string // the principals, as written
	Actual   string   // what was found: the server process, or the socket file or directory
}

func (e *ServerIdentityError) Error() string {
	hint := ""
	if strings.Join(e.Expected, " ") == "same-user root" {
		hint = " (the default: WithExpectedServer, or --expect-server, names who else to trust)"
	}
	return fmt.Sprintf("grpcipc: %s: server at %s: %s; expected %s%s",
		ErrUntrustedServer, e.Endpoint, e.Actual, strings.Join(e.Expected, " or "), hint)
}

// Unwrap returns [ErrUntrustedServer].
func (e *ServerIdentityError) Unwrap() error { return ErrUntrustedServer }

func principalTexts(ps []Principal) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.text
	}
	return out
}

// checkServer checks the server process's identity against expect.
func checkServer(ep Endpoint, c *Creds, expect []Principal, self identity) error {
	for _, p := range expect {
		if p.matches(c, self) {
			return nil
		}
	}
	actual := "runs as " + c.String()
	if c == nil {
		actual = "the OS gave no identity for the server process"
	}
	return &ServerIdentityError{Endpoint: ep.String(), Expected: principalTexts(expect), Actual: actual}
}
