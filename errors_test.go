package grpcipc

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// wantText checks the rule of CONTRIBUTING.md's "Error texts": an error an
// exported function returns begins with "grpcipc: " exactly once, and it
// says what it must.
func wantText(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
		return
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "grpcipc: ") || strings.Count(msg, "grpcipc: ") != 1 {
		t.Errorf("%s: %q does not begin with \"grpcipc: \", once", what, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: %q does not say %q", what, msg, w)
		}
	}
}

func TestErrorTexts(t *testing.T) {
	ctx := context.Background()
	dir := testutil.ShortTempDir(t)
	sock := testutil.Endpoint(t)

	_, err := ParseEndpoint("bogus")
	wantText(t, "ParseEndpoint", err, `endpoint "bogus": not an endpoint`)
	if !errors.Is(err, ErrInvalidEndpoint) {
		t.Errorf("ParseEndpoint: %v does not wrap ErrInvalidEndpoint", err)
	}
	// Functions that take an endpoint return its EndpointError as it is.
	for name, f := range map[string]func() error{
		"Listen":            func() error { _, err := Listen(ctx, "bogus"); return err },
		"Dial":              func() error { _, err := Dial(ctx, "bogus"); return err },
		"NewClient":         func() error { _, err := NewClient("bogus"); return err },
		"ClientCredentials": func() error { _, err := ClientCredentials("bogus"); return err },
	} {
		err := f()
		var ee *EndpointError
		if !errors.As(err, &ee) {
			t.Errorf("%s(bogus) = %v, want an *EndpointError", name, err)
		}
		wantText(t, name, err, `endpoint "bogus": not an endpoint`)
	}
	_, err = DefaultEndpoint("bad/name")
	wantText(t, "DefaultEndpoint", err, `endpoint "bad/name": application name`)

	_, err = Listen(ctx, sock, nil)
	wantText(t, "Listen, nil option", err, "listen "+sock+": nil ListenOption")
	_, err = Listen(ctx, sock, WithPolicy(nil))
	wantText(t, "Listen, nil policy", err, "listen "+sock+": nil policy")
	_, err = Listen(ctx, "tcp://127.0.0.1:0", WithPolicy(SameUserPolicy()))
	wantText(t, "Listen, tcp with a policy", err, "listen tcp://127.0.0.1:0: a policy needs a local endpoint")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = Listen(cctx, sock)
	wantText(t, "Listen, context cancelled", err, "listen "+sock+": context canceled")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Listen, context cancelled: %v does not wrap context.Canceled", err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = Listen(ctx, "tcp://"+taken.Addr().String())
	wantText(t, "Listen, tcp port taken", err, "listen tcp://"+taken.Addr().String()+": ")
	_, err = ActivatedListeners(WithSocketMode(0o600))
	wantText(t, "ActivatedListeners, socket mode", err, "activated sockets: ", "SocketMode=")

	missing := filepath.Join(dir, "missing.json")
	_, err = LoadPolicy(missing)
	wantText(t, "LoadPolicy, no file", err, "reading the policy: ", missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPolicy, no file: %v does not wrap fs.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"name": "x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	policyErrs := map[string]error{}
	_, policyErrs["LoadPolicy"] = LoadPolicy(bad)
	wantText(t, "LoadPolicy", policyErrs["LoadPolicy"], "policy file "+bad+": invalid policy: allow_rules: missing")
	_, policyErrs["ParsePolicy"] = ParsePolicy([]byte(`{}`))
	wantText(t, "ParsePolicy", policyErrs["ParsePolicy"], "invalid policy: name: missing")
	_, policyErrs["ParsePrincipal"] = ParsePrincipal("bogus")
	wantText(t, "ParsePrincipal", policyErrs["ParsePrincipal"], `invalid policy: principal "bogus": want KIND:VALUE`)
	_, policyErrs["NewPolicy"] = NewPolicy("", nil, nil)
	wantText(t, "NewPolicy", policyErrs["NewPolicy"], "invalid policy: the policy has no name")
	_, policyErrs["AllowPolicy"] = AllowPolicy(Principal{})
	wantText(t, "AllowPolicy", policyErrs["AllowPolicy"], "invalid policy: the zero Principal")
	for name, err := range policyErrs {
		if !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: %v does not wrap ErrPolicy", name, err)
		}
	}
	_, err = ParsePin("x")
	wantText(t, "ParsePin", err, `pin "x": want 64 hex digits`)

	_, err = NewServer(nil)
	wantText(t, "NewServer, nil option", err, "nil ServerOption")
	_, err = NewClient(sock, nil)
	wantText(t, "NewClient, nil option", err, "nil ClientOption")
	_, err = StartChild(ctx, exec.Command("true"), nil)
	wantText(t, "StartChild, nil option", err, "nil ChildOption")
	_, err = ActivatedListeners(nil)
	wantText(t, "ActivatedListeners, nil option", err, "nil ListenOption")
	_, err = NewClient(sock, WithExpectedServer())
	wantText(t, "NewClient, no principals", err, "WithExpectedServer with no principals")
	_, err = ChildListener()
	wantText(t, "ChildListener", err, "not started by grpcipc.StartChild")
	if !errors.Is(err, ErrNotChild) {
		t.Errorf("ChildListener: %v is not ErrNotChild", err)
	}
}
