package listen

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// The policy is given once (issue 22): given to NewServer only, the socket
// file Listen made with its defaults (and the directory it created) let in
// those the policy admits; given to Listen only, the server checks callers
// with it; given to both and differing, or with an explicit WithSocketMode,
// Serve warns, naming both. A caller the file refuses is told which file or
// directory refused it.
func TestPolicyGivenOnce(t *testing.T) {
	testutil.RequireRoot(t)
	p, err := grpcipc.AllowPolicy(grpcipc.UID(testutil.Nobody))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		listenOpts []grpcipc.ListenOption
		serverOpts []grpcipc.ServerOption
		code       string // what the other user's call gets
		dirMode    os.FileMode
		sockMode   os.FileMode
		warn       string // a warning Serve logs
		message    string // a word of the refusal
	}{
		{name: "to NewServer only", serverOpts: []grpcipc.ServerOption{grpcipc.WithPolicy(p)}, code: "OK", dirMode: 0o711, sockMode: 0o666},
		{name: "to Listen only", listenOpts: []grpcipc.ListenOption{grpcipc.WithPolicy(p)}, code: "OK", dirMode: 0o711, sockMode: 0o666},
		{name: "to both", listenOpts: []grpcipc.ListenOption{grpcipc.WithPolicy(p)}, serverOpts: []grpcipc.ServerOption{grpcipc.WithPolicy(p)}, code: "OK", dirMode: 0o711, sockMode: 0o666},
		{name: "to neither", code: "PermissionDenied", dirMode: 0o700, sockMode: 0o600, message: "the socket's directory"},
		{name: "a narrower socket mode", listenOpts: []grpcipc.ListenOption{grpcipc.WithSocketMode(0o600)}, serverOpts: []grpcipc.ServerOption{grpcipc.WithPolicy(p)},
			code: "PermissionDenied", dirMode: 0o700, sockMode: 0o600, warn: "callers the policy admits are refused by the file", message: "the socket's directory"},
		{name: "a wider socket mode", listenOpts: []grpcipc.ListenOption{grpcipc.WithSocketMode(0o666)},
			code: "PermissionDenied", dirMode: 0o711, sockMode: 0o666, warn: "the file lets in callers the policy refuses", message: "not admitted by this server's policy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(traversableTempDir(t), "app")
			endpoint := "unix://" + filepath.Join(dir, "app.sock")
			l, err := grpcipc.Listen(context.Background(), endpoint, c.listenOpts...)
			if err != nil {
				t.Fatal(err)
			}
			log := &e2e.SyncBuffer{}
			s, err := grpcipc.NewServer(append(c.serverOpts, grpcipc.WithLogger(slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))))...)
			if err != nil {
				t.Fatal(err)
			}
			greetpb.RegisterGreeterServer(s, &e2e.CountingServer{})
			done := make(chan struct{})
			go func() { defer close(done); s.Serve(l) }()
			t.Cleanup(func() { s.Stop(); <-done })

			res := e2e.Call(t, e2e.Nobody, endpoint, "SayHello") // Serve has begun once the socket answers
			if res.Code != c.code {
				t.Errorf("uid %d's call: %s %q, want %s", testutil.Nobody, res.Code, res.Message, c.code)
			}
			if c.message != "" && !strings.Contains(res.Message, c.message) {
				t.Errorf("the refusal %q does not say %q", res.Message, c.message)
			}
			for path, want := range map[string]os.FileMode{dir: c.dirMode, filepath.Join(dir, "app.sock"): c.sockMode} {
				if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
					t.Errorf("%s: mode %v (%v), want %04o", path, fi.Mode().Perm(), err, want)
				}
			}
			warned := log.String() // Serve logged before it accepted the call
			if c.warn != "" {
				warned = e2e.LogSince(log, 0, c.warn)
			}
			if c.warn == "" && strings.Contains(warned, "level=WARN") {
				t.Errorf("a warning where none was due:\n%s", warned)
			}
			if c.warn != "" && (!strings.Contains(warned, c.warn) || !strings.Contains(warned, "policy_needs_mode=")) {
				t.Errorf("no warning %q naming both modes in:\n%s", c.warn, warned)
			}
		})
	}
}

// A daemon for other users: a root server on SystemEndpoint(app), whose
// policy (given to NewServer only) admits another user, is reached by that
// user's client through SystemEndpoint(app) too.
func TestSystemEndpointDaemon(t *testing.T) {
	testutil.RequireRoot(t)
	app := fmt.Sprintf("grpcipc-test-%d", os.Getpid())
	ep, err := grpcipc.SystemEndpoint(app)
	if err != nil {
		t.Fatal(err)
	}
	l, err := grpcipc.Listen(context.Background(), ep.String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := grpcipc.AllowPolicy(grpcipc.UID(testutil.Nobody))
	if err != nil {
		t.Fatal(err)
	}
	s, err := grpcipc.NewServer(grpcipc.WithPolicy(p))
	if err != nil {
		t.Fatal(err)
	}
	greetpb.RegisterGreeterServer(s, &e2e.CountingServer{})
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	t.Cleanup(func() {
		s.Stop()
		<-done
		if _, err := os.Stat(filepath.Dir(ep.Address)); !os.IsNotExist(err) {
			t.Errorf("the daemon's directory %s is left behind: %v", filepath.Dir(ep.Address), err)
		}
	})
	if res := e2e.Call(t, e2e.Nobody, "system:"+app, "SayHello"); res.Code != "OK" {
		t.Errorf("uid %d through SystemEndpoint: %s %q", testutil.Nobody, res.Code, res.Message)
	}
}
