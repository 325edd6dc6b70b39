package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// pipeClientAccess is what grpcipc's clients open a pipe with: read and
// write data and attributes. Not GENERIC_WRITE, whose FILE_APPEND_DATA is,
// on a pipe, FILE_CREATE_PIPE_INSTANCE: the right to serve the name.
const pipeClientAccess = windows.FILE_READ_DATA | windows.FILE_WRITE_DATA |
	windows.FILE_READ_ATTRIBUTES | windows.FILE_WRITE_ATTRIBUTES | windows.SYNCHRONIZE

// listenPipe serves a named pipe with go-winio. go-winio creates the first
// instance with FILE_CREATE, so that a name another process already holds
// is refused rather than shared (no squatting), and every instance with
// FILE_PIPE_REJECT_REMOTE_CLIENTS. The DACL comes from the policy
// (pipeSDDL).
func listenPipe(_ context.Context, ep Endpoint, cfg listenConfig) (net.Listener, error) {
	sddl, err := pipeSDDL(cfg.policy, cfg.self)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", ep, err)
	}
	return listenPipeSDDL(ep, sddl)
}

// listenPipeSDDL serves ep with the security descriptor sddl.
func listenPipeSDDL(ep Endpoint, sddl string) (net.Listener, error) {
	// FILE_CREATE refuses a taken name on Windows; Wine shares it instead,
	// so look first: a pipe that answers, is busy or refuses us exists.
	if err := probePipe(ep); err != nil {
		return nil, fmt.Errorf("listen %s: %w", ep, err)
	}
	l, err := winio.ListenPipe(ep.pipePath(), &winio.PipeConfig{SecurityDescriptor: sddl})
	if err != nil {
		if errors.Is(err, windows.ERROR_ALREADY_EXISTS) || errors.Is(err, windows.ERROR_ACCESS_DENIED) ||
			errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, fmt.Errorf("listen %s: %w", ep, &inUseError{detail: "another process holds that pipe name", cause: err})
		}
		return nil, fmt.Errorf("listen %s: %w", ep, err)
	}
	if underWine() {
		// Wine hands the first client the idle first instance go-winio
		// keeps to hold the name, where it hangs: use it up here.
		if c, err := winio.DialPipeAccessImpLevel(context.Background(), ep.pipePath(), pipeClientAccess, winio.PipeImpLevelAnonymous); err == nil {
			c.Close()
		}
	}
	return l, nil
}

// probePipe fails with ErrAddressInUse if a pipe of ep's name exists.
func probePipe(ep Endpoint) error {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c, err := winio.DialPipeAccessImpLevel(ctx, ep.pipePath(), pipeClientAccess, winio.PipeImpLevelAnonymous)
	switch {
	case err == nil:
		c.Close()
		return &inUseError{detail: "a server is accepting connections on that pipe"}
	case errors.Is(err, context.DeadlineExceeded):
		return &inUseError{detail: "a server holds that pipe name, all its instances busy"}
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		return &inUseError{detail: "a pipe of that name exists and does not admit this user", cause: err}
	case errors.Is(err, windows.ERROR_FILE_NOT_FOUND), errors.Is(err, windows.ERROR_PATH_NOT_FOUND):
		return nil
	}
	return fmt.Errorf("cannot tell whether the pipe name is taken: %w", err)
}

// dialPipe connects at the Anonymous impersonation level unless identify
// asks for Identification: the server can then learn who the client is
// (it does anyway, from the client's process token) but never act as it.
func dialPipe(ctx context.Context, ep Endpoint, identify bool) (net.Conn, error) {
	level := winio.PipeImpLevelAnonymous
	if identify {
		level = winio.PipeImpLevelIdentification
	}
	c, err := winio.DialPipeAccessImpLevel(ctx, ep.pipePath(), pipeClientAccess, level)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "npipe", Addr: pipeAddr(ep.pipePath()), Err: err}
	}
	return c, nil
}

// pipePath is the Win32 path of a named pipe endpoint.
func (e Endpoint) pipePath() string { return `\\.\pipe\` + e.Address }

type pipeAddr string

func (a pipeAddr) Network() string { return "npipe" }
func (a pipeAddr) String() string  { return string(a) }

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

var (
	wineOnce sync.Once
	isWine   bool
)

// underWine reports whether this process runs under Wine, whose ntdll
// exports wine_get_version.
func underWine() bool {
	wineOnce.Do(func() {
		isWine = windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
	})
	return isWine
}
