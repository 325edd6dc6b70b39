//go:build unix

package main

import (
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc"
)

// exitStatuses reads the "Exit status" section of grpcipc --help: each
// status ("0", "1", "64+N", ...) and what it says of it, on one line.
func exitStatuses(t *testing.T) map[string]string {
	t.Helper()
	code, stdout, stderr := runCLI(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d, %q", code, stderr)
	}
	_, section, ok := strings.Cut(stdout, "\nExit status")
	if !ok {
		t.Fatalf("--help has no Exit status section:\n%s", stdout)
	}
	section, _, _ = strings.Cut(section, "\n\n")
	entry := regexp.MustCompile(`^  (\S+) +(.*)$`)
	says := map[string]string{}
	last := ""
	for _, line := range strings.Split(section, "\n")[1:] {
		if m := entry.FindStringSubmatch(line); m != nil {
			last = m[1]
			says[last] = m[2]
		} else if last != "" {
			says[last] += " " + strings.TrimSpace(line)
		}
	}
	return says
}

// TestExitStatusByStage: grpcipc --help says which exit status each stage's
// failure has, and each stage's failure really exits so, with one line
// that says what happened.
func TestExitStatusByStage(t *testing.T) {
	says := exitStatuses(t)
	dir := testutil.ShortTempDir(t)
	greetProto := filepath.Join("..", "..", "proto", "greet", "greet.proto")
	protoset := filepath.Join(dir, "echo.protoset")
	writeEchoProtoset(t, protoset)

	// A server; one whose policy refuses reflection and Echo but admits
	// this user to greet.Greeter; a socket nothing serves on (a server
	// that stopped left it); one that never answers (its listener never
	// accepts).
	served := "unix://" + filepath.Join(dir, "s.sock")
	startServe(t, served)
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"name": "greet-only", "allow_rules": [{"name": "greet",
		"source": {"principals": ["same-user"]}, "request": {"paths": ["/greet.Greeter/SayHello"]}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	policed := "unix://" + filepath.Join(dir, "p.sock")
	cmd := cliCommand(t, nil, "serve", "--listen", policed, "--policy", policy)
	r := testutil.Start(t, cmd) // its refusals' log lines go nowhere
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "serving ") {
		t.Fatalf("serve --policy said %q", line)
	}
	stalePath := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stalePath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	stale := "unix://" + stalePath
	silentPath := filepath.Join(dir, "silent.sock")
	silentL, err := net.Listen("unix", silentPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silentL.Close() })
	silent := "unix://" + silentPath
	// A plain grpc.Server without reflection.
	plainPath := filepath.Join(dir, "plain.sock")
	plainL, err := net.Listen("unix", plainPath)
	if err != nil {
		t.Fatal(err)
	}
	plainS := grpc.NewServer()
	greetpb.RegisterGreeterServer(plainS, greetpb.UnimplementedGreeterServer{})
	go plainS.Serve(plainL)
	t.Cleanup(plainS.Stop)
	plain := "unix://" + plainPath
	none := "unix://" + filepath.Join(dir, "none.sock")
	noDir := "unix://" + filepath.Join(dir, "gone", "g.sock")

	hello := "greet.Greeter/SayHello"
	cases := []struct {
		name   string
		status string // the --help entry
		says   string // what it says of this stage
		args   []string
		code   int
		stderr string
	}{
		{"done", "0", "done", []string{"call", "--connect", served, hello}, 0, ""},

		{"no socket file", "1", "no server at the endpoint", []string{"list", "--connect", none}, 1,
			"no server at " + none + " (is it running?): no socket file " + strings.TrimPrefix(none, "unix://")},
		{"no socket file, call", "1", "no server at the endpoint", []string{"call", "--connect", none, hello}, 1,
			"no server at " + none + " (is it running?): no socket file"},
		{"no socket file, describe over HTTP/2", "1", "no server at the endpoint", []string{"describe", "--http2", "--connect", none}, 1,
			"no server at " + none + " (is it running?): no socket file"},
		{"no directory", "1", "no server at the endpoint", []string{"call", "--connect", noDir, hello}, 1,
			"no server at " + noDir + " (is it running?): no directory " + filepath.Join(dir, "gone")},
		{"a stale socket file", "1", "no server at the endpoint", []string{"call", "--connect", stale, hello}, 1,
			"no server at " + stale + " (is it running?): connection refused (a socket file left by a server that stopped?)"},
		{"no server, --proto", "1", "with --proto or --protoset", []string{"call", "--connect", none, "--proto", greetProto, hello}, 1,
			"no server at " + none + " (is it running?): no socket file"},
		{"no server, --protoset over HTTP/2", "1", "with --proto or --protoset", []string{"call", "--http2", "--connect", stale, "--protoset", protoset, "grpcipc.examples.v1.Echo/Say"}, 1,
			"no server at " + stale + " (is it running?): connection refused"},
		{"not the server expected", "1", "a server not the one expected", []string{"list", "--connect", served, "--expect-server", "uid:4242"}, 1,
			"untrusted server"},
		{"--connect-timeout passed", "1", "--connect-timeout passed", []string{"list", "--connect", silent, "--connect-timeout", "0.3"}, 1,
			"no answer to connecting and reflection within 300ms"},
		{"reflection refused", "1", "reflection refused", []string{"list", "--connect", policed}, 1,
			policed + ": reflection refused by the server's policy: pass --proto or --protoset (the server said: permission denied: "},
		{"reflection refused, HTTP/2", "1", "reflection refused", []string{"call", "--http2", "--connect", policed, hello}, 1,
			"reflection refused by the server's policy: pass --proto or --protoset"},
		{"no reflection", "1", "reflection refused or failed", []string{"list", "--connect", plain}, 1,
			plain + ": the server offers no reflection service (Unimplemented): pass --proto or --protoset"},
		{"no such method", "1", "no such service, method or symbol", []string{"call", "--connect", served, "greet.Greeter/Nope"}, 1,
			`no method "Nope"`},
		{"a request not valid", "1", "a request or --proto file that is not valid", []string{"call", "--connect", served, hello, `{"nam": 1}`}, 1,
			"not a valid greet.HelloRequest"},

		{"unknown command", "2", "an unknown command", []string{"cal", "--connect", served, hello}, 2,
			`unknown command "cal": did you mean call?`},
		{"unknown flag", "2", "an unknown command or flag", []string{"call", "--nope", hello}, 2, "flag provided but not defined: --nope"},
		{"bad endpoint", "2", "a bad flag value or endpoint", []string{"list", "--connect", "unix:"}, 2, "empty socket path"},
		{"arguments", "2", "a wrong number of arguments", []string{"call"}, 2, "call takes one or two arguments"},

		{"--max-time while connecting", "64+N", "68 when --max-time passed (DeadlineExceeded, at any stage)",
			[]string{"call", "--connect", silent, "--connect-timeout", "5", "--max-time", "0.3", hello}, 68,
			"--max-time (300ms) passed while connecting and reflecting"},
		{"--max-time during the call", "64+N", "68 when --max-time passed",
			[]string{"call", "--connect", served, "--max-time", "0.3", "grpc.health.v1.Health/Watch"}, 68, "DeadlineExceeded"},
		{"NotFound", "64+N", "69 NotFound",
			[]string{"call", "--connect", served, "grpc.health.v1.Health/Check", `{"service": "no.such.Service"}`}, 69, "NotFound"},
		{"PermissionDenied", "64+N", "71 PermissionDenied",
			[]string{"call", "--connect", policed, "--protoset", protoset, "grpcipc.examples.v1.Echo/Say"}, 71, "may not call /grpcipc.examples.v1.Echo/Say"},
		{"Unavailable", "64+N", "78 Unavailable",
			[]string{"call", "--connect", served, "grpcipc.examples.v1.Echo/Say", `{"failCode": 14}`}, 78, "Unavailable"},
		{"not the server expected, --proto", "64+N", "a failure to connect is then the call's",
			[]string{"call", "--connect", served, "--expect-server", "uid:4242", "--proto", greetProto, hello}, 78, "untrusted server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(says[tc.status], tc.says) {
				t.Errorf("--help's exit status %s says %q, not %q", tc.status, says[tc.status], tc.says)
			}
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			if code != tc.code {
				t.Errorf("grpcipc %s: exit %d, want %d; stdout %q, stderr %q", strings.Join(tc.args, " "), code, tc.code, stdout, stderr)
			}
			if tc.code == 0 {
				if stderr != "" {
					t.Errorf("stderr %q", stderr)
				}
				return
			}
			oneErrorLine(t, stderr, tc.stderr)
		})
	}
	if _, stdout, _ := runCLI(t, nil, "call", "--help"); !strings.Contains(strings.Join(strings.Fields(stdout), " "),
		"A failed call exits with 64 plus its gRPC code; a failure before it (no server, reflection, no such method) with 1") {
		t.Errorf("call --help does not give its exit statuses:\n%s", stdout)
	}
	// An interrupted demo's 130 is TestDemoInterrupted's.
	if !strings.Contains(says["130"], "demo interrupted") {
		t.Errorf("--help's exit status 130 says %q", says["130"])
	}
}

// TestNoServerAbstract: nothing listening on an abstract name is "no
// server", connection refused.
func TestNoServerAbstract(t *testing.T) {
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	if _, err := grpcipc.ParseEndpoint(endpoint); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("no abstract sockets here: %v", err)
	}
	for _, args := range [][]string{{"list"}, {"call", "--http2", "greet.Greeter/SayHello"}} {
		code, _, stderr := runCLI(t, nil, append(args, "--connect", endpoint)...)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
		oneErrorLine(t, stderr, "no server at "+endpoint+" (is it running?): connection refused")
	}
}

// TestSocketRefusesUser: a socket file this user may not open says so,
// naming the file's owner and mode and the user, whether reflection or the
// call (with --proto) connects: exit status 1, a connect-stage failure.
func TestSocketRefusesUser(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.ShortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	endpoint := "unix://" + filepath.Join(dir, "s.sock")
	startServe(t, endpoint) // 0600, root's
	greetProto, err := filepath.Abs(filepath.Join("..", "..", "proto", "greet", "greet.proto"))
	if err != nil {
		t.Fatal(err)
	}
	exe := testutil.SharedExecutable(t)
	for _, args := range [][]string{
		{"list", "--connect", endpoint},
		{"call", "--connect", endpoint, "greet.Greeter/SayHello"},
		{"call", "--http2", "--connect", endpoint, "--proto", greetProto, "greet.Greeter/SayHello"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			c := cliCommand(t, nil, args...)
			c.Path, c.Args[0] = exe, exe
			c.Dir = os.TempDir() // one nobody can enter: the package's may not be
			testutil.SetCredential(c, testutil.Nobody, testutil.Nobody, nil)
			var out, errOut strings.Builder
			c.Stdout, c.Stderr = &out, &errOut
			c.Run()
			if code := c.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit %d, want 1; stdout %q, stderr %q", code, out.String(), errOut.String())
			}
			nobody := "uid 65534"
			if u, err := user.LookupId("65534"); err == nil {
				nobody += " (" + u.Username + ")"
			}
			oneErrorLine(t, errOut.String(), "grpcipc: permission denied: "+endpoint+": the socket file (mode 0600, owner uid 0 (root), group 0 (root)) refuses this process's user ("+nobody+")")
		})
	}
}
