//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

var serverPID = regexp.MustCompile(`server +pid (\d+) serving (\S+)`)

func TestDemo(t *testing.T) {
	tmp := testutil.ShortTempDir(t)
	code, stdout, stderr := runCLI(t, []string{"TMPDIR=" + tmp}, "demo", "--count", "20")
	if code != 0 {
		t.Fatalf("demo exited %d: %s%s", code, stdout, stderr)
	}
	t.Logf("demo printed:\n%s", stdout)
	for _, want := range []string{`-> {message: "Hello grpcipc demo"}`, "20 more calls: median", "WhoAmI", "transport unix", "security PrivacyAndIntegrity", "caller pid ", "exited; socket and "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if stderr != "" {
		t.Errorf("demo wrote to stderr: %q", stderr)
	}
	m := serverPID.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatal("demo did not print the server's pid")
	}
	pid, _ := strconv.Atoi(m[1])
	if !processGone(pid) {
		t.Errorf("server pid %d still exists after demo", pid)
	}
	if !strings.HasPrefix(m[2], "unix://"+tmp) {
		t.Errorf("demo served on %s, not in its temporary directory %s", m[2], tmp)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("demo left %v in %s", ents, tmp)
	}
}

func TestDemoInterrupted(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			tmp := testutil.ShortTempDir(t)
			cmd := cliCommand(t, []string{"TMPDIR=" + tmp}, "demo", "--count", "10000000")
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			r := testutil.Start(t, cmd)
			var pid int
			for pid == 0 {
				line, err := r.ReadString('\n')
				if err != nil {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("demo ended before starting its server: %v, %s", err, errOut.String())
				}
				if m := serverPID.FindStringSubmatch(line); m != nil {
					pid, _ = strconv.Atoi(m[1])
				}
			}
			// Let the calls run, then interrupt the demo alone (not its
			// child, as a terminal's Ctrl-C would).
			time.Sleep(200 * time.Millisecond)
			cmd.Process.Signal(sig)
			io.Copy(io.Discard, r)
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 130 {
				t.Errorf("interrupted demo exited %d, want 130", code)
			}
			oneErrorLine(t, errOut.String(), "demo interrupted")
			if !processGone(pid) {
				t.Errorf("server pid %d still exists after the demo was interrupted", pid)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("interrupted demo left %v in %s", ents, tmp)
			}
		})
	}
}

func TestServeCallList(t *testing.T) {
	sock := filepath.Join(testutil.ShortTempDir(t), "g.sock")
	endpoint := "unix://" + sock
	srv := startServe(t, endpoint)
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("serve's socket: %v, %v; want a 0600 socket", fi, err)
	}

	code, stdout, stderr := runCLI(t, nil, "call", "--connect", endpoint, "greet.Greeter/SayHello", `{"name":"CLI"}`)
	if code != 0 {
		t.Fatalf("call exited %d: %s", code, stderr)
	}
	var hello struct{ Message string }
	if err := json.Unmarshal([]byte(stdout), &hello); err != nil || hello.Message != "Hello CLI" {
		t.Errorf("call printed %q (%v); want message Hello CLI", stdout, err)
	}

	// Flags after the method, the other method spellings, a default request.
	code, stdout, stderr = runCLI(t, nil, "call", "grpcipc.v1.Identity.WhoAmI", "--connect", endpoint)
	if code != 0 {
		t.Fatalf("call WhoAmI exited %d: %s", code, stderr)
	}
	var who map[string]any
	if err := json.Unmarshal([]byte(stdout), &who); err != nil || who["transport"] != "unix" || who["endpoint"] != endpoint {
		t.Errorf("WhoAmI printed %q (%v)", stdout, err)
	}
	code, stdout, _ = runCLI(t, nil, "call", "--connect", endpoint, "/grpc.health.v1.Health/Check")
	if code != 0 || !strings.Contains(stdout, `"SERVING"`) {
		t.Errorf("health Check: exit %d, %q", code, stdout)
	}

	code, stdout, stderr = runCLI(t, nil, "list", "--connect", endpoint)
	if code != 0 {
		t.Fatalf("list exited %d: %s", code, stderr)
	}
	for _, want := range []string{"greet.Greeter", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpcipc.v1.Identity"} {
		if !slicesContains(strings.Split(strings.TrimSpace(stdout), "\n"), want) {
			t.Errorf("list printed %q, without %s", stdout, want)
		}
	}
	code, stdout, _ = runCLI(t, nil, "list", "--connect", endpoint, "greet.Greeter")
	if code != 0 || stdout != "greet.Greeter.SayHello\n" {
		t.Errorf("list greet.Greeter: exit %d, %q", code, stdout)
	}

	// Refusals, each one line naming the problem.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "--connect", endpoint, "greet.Greeter/Nope"}, `no method "Nope" (it has SayHello)`},
		{[]string{"call", "--connect", endpoint, "greet.Nobody/SayHello"}, `no service "greet.Nobody"`},
		{[]string{"call", "--connect", endpoint, "greet.Greeter/SayHello", `{"nam":"x"}`}, `not a valid greet.HelloRequest`},
		{[]string{"call", "--connect", endpoint, "greet.Greeter/SayHello", `{`}, `not a valid greet.HelloRequest`},
	} {
		code, _, stderr := runCLI(t, nil, tc.args...)
		if code != 1 {
			t.Errorf("%v exited %d, want 1", tc.args, code)
		}
		oneErrorLine(t, stderr, tc.want)
	}

	// A stream that does not end (health Watch) prints its updates as
	// they come and ends with the timeout: DeadlineExceeded, exit 64+4.
	code, stdout, stderr = runCLI(t, nil, "call", "--connect", endpoint, "--timeout", "500ms", "grpc.health.v1.Health/Watch")
	if code != 68 || !strings.Contains(stdout, `"SERVING"`) {
		t.Errorf("call Watch: exit %d, %q, %q; want its SERVING update and exit 68", code, stdout, stderr)
	}
	oneErrorLine(t, stderr, "DeadlineExceeded")

	// A second server on the same endpoint is refused; the first one goes on.
	code, _, stderr = runCLI(t, nil, "serve", "--listen", endpoint)
	if code != 1 {
		t.Errorf("a second serve exited %d, want 1", code)
	}
	oneErrorLine(t, stderr, "address already in use")
	if code, _, stderr := runCLI(t, nil, "call", "--connect", endpoint, "greet.Greeter/SayHello"); code != 0 {
		t.Errorf("the first server stopped serving after a second serve was refused: %s", stderr)
	}

	// SIGTERM: graceful stop, exit 0, socket removed.
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("serve left its socket: %v", err)
	}
	code, _, stderr = runCLI(t, nil, "call", "--connect", endpoint, "greet.Greeter/SayHello")
	if code != 1 {
		t.Errorf("call with no server exited %d, want 1", code)
	}
	oneErrorLine(t, stderr, endpoint)
}

func TestServeAbstract(t *testing.T) {
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	if _, err := grpcipc.ParseEndpoint(endpoint); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("no abstract sockets here: %v", err)
	}
	srv := startServe(t, endpoint)
	code, stdout, stderr := runCLI(t, nil, "call", "--connect", endpoint, "greet.Greeter/SayHello", `{"name":"abstract"}`)
	if code != 0 || !strings.Contains(stdout, "Hello abstract") {
		t.Errorf("call over %s: exit %d, %q, %q", endpoint, code, stdout, stderr)
	}
	srv.Process.Signal(syscall.SIGINT)
	if err := srv.Wait(); err != nil {
		t.Errorf("serve after SIGINT: %v", err)
	}
}

// TestServeUnauthenticatedTCP: with --unauthenticated-tcp a loopback tcp
// endpoint serves, and says on stderr that anyone may call.
func TestServeUnauthenticatedTCP(t *testing.T) {
	cmd := cliCommand(t, nil, "serve", "--listen", "tcp://127.0.0.1:0", "--unauthenticated-tcp")
	var stderr syncWriter
	cmd.Stderr = &stderr
	r := testutil.Start(t, cmd)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "serving tcp://127.0.0.1:") {
		t.Fatalf("serve said %q, %v", line, err)
	}
	go io.Copy(io.Discard, r)
	// stderr is copied by its own goroutine: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stderr.String(), "without client authentication") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "without client authentication") {
		t.Errorf("no warning on stderr: %q", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
}

// syncWriter collects a child's stderr safely.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestCLIErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"serve", "--nope"}, 2, "flag provided but not defined: --nope"},
		{[]string{"serve", "extra"}, 2, "serve takes no arguments"},
		{[]string{"serve", "--listen", "foo://x"}, 2, `unknown scheme "foo"`},
		{[]string{"serve", "--listen", "unix:///" + strings.Repeat("x", 120)}, 2, "allows at most 107"},
		{[]string{"serve", "--listen", "npipe:x"}, 1, "named pipes exist only on Windows"},
		{[]string{"call"}, 2, "call takes one or two arguments"},
		{[]string{"call", "NoSlash"}, 2, `method "NoSlash": want package.Service/Method`},
		{[]string{"call", "--connect", "unix:", "a.B/C"}, 2, "empty socket path"},
		{[]string{"list", "--timeout", "soon"}, 2, `invalid value "soon"`},
		{[]string{"endpoint", "a/b"}, 1, "application name may hold only"},
		{[]string{"endpoint", "a", "b"}, 2, "at most one argument"},
		{[]string{"demo", "--count", "0"}, 2, "--count must be from 1"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
			oneErrorLine(t, stderr, tt.want)
		})
	}
	code, _, stderr := runCLI(t, nil)
	if code != 2 || !strings.Contains(stderr, "Usage:") {
		t.Errorf("no arguments: exit %d, %q; want 2 and the usage", code, stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"call", "-h"}, {"list", "--help"}, {"endpoint", "--help"}, {"demo", "--help"}, {"bench", "--help"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
		if len(args) == 2 && !strings.Contains(stdout, "grpcipc "+args[0]) {
			t.Errorf("%v: usage does not name the command: %q", args, stdout)
		}
	}
}

func TestEndpointCommand(t *testing.T) {
	for _, app := range []string{"", "myapp"} {
		args := []string{"endpoint"}
		name := "grpcipc"
		if app != "" {
			args, name = append(args, app), app
		}
		want, err := grpcipc.DefaultEndpoint(name)
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || stdout != want.String()+"\n" {
			t.Errorf("%v: exit %d, %q, %q; want %s", args, code, stdout, stderr, want)
		}
	}
}

func TestServePolicyErrors(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"name": "b", "allow_rules": [{"name": "a", "source": {"principals": ["usr:alice"]}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := "unix://" + filepath.Join(dir, "s.sock")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "--listen", sock, "--policy", bad}, 1, "policy file " + bad + `: invalid policy: allow_rules[0].source.principals[0]: "usr:alice": unknown kind "usr"`},
		{[]string{"serve", "--listen", sock, "--policy", filepath.Join(dir, "none.json")}, 1, "no such file"},
		{[]string{"serve", "--listen", sock, "--allow", "uid:x"}, 2, `--allow: invalid policy: principal "uid:x"`},
		{[]string{"serve", "--listen", sock, "--allow", "uid:0", "--policy", bad}, 2, "--allow or --policy, not both"},
		{[]string{"serve", "--listen", "tcp://127.0.0.1:0", "--allow", "uid:0"}, 1, "tcp connections carry no OS identity"},
		{[]string{"serve", "--listen", "tcp://127.0.0.1:0"}, 2, "tcp carries no OS identity, so callers must present a client certificate"},
		{[]string{"serve", "--listen", "tcp://0.0.0.0:0", "--unauthenticated-tcp"}, 2, "without TLS (--cert, --key) only loopback callers are served"},
		{[]string{"serve", "--listen", sock, "--unauthenticated-tcp"}, 2, "--unauthenticated-tcp applies only to tcp:// endpoints"},
		{[]string{"serve", "--listen", sock, "--allow", "exe:/bin/true"}, 2, "admits any user who can run the file"},
	} {
		code, stdout, stderr := runCLI(t, nil, tc.args...)
		if code != tc.code || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q; want %d", tc.args, code, stdout, tc.code)
		}
		oneErrorLine(t, stderr, tc.want)
	}
	if _, err := os.Lstat(filepath.Join(dir, "s.sock")); err == nil {
		t.Error("a refused serve left a socket")
	}
}

// TestServeAllowOtherUser: serve --allow admits the user it names, through
// the CLI on both sides, and refuses another with one clear line.
func TestServeAllowOtherUser(t *testing.T) {
	testutil.RequireRoot(t)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	cmd := cliCommand(t, nil, "serve", "--listen", endpoint, "--allow", "uid:65534")
	var serverLog bytes.Buffer
	cmd.Stderr = &serverLog
	r := testutil.Start(t, cmd)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "serving ") {
		t.Fatalf("serve said %q", line)
	}
	go io.Copy(io.Discard, r)
	exe := testutil.SharedExecutable(t)
	callAs := func(uid int) (int, string, string) {
		c := exec.Command(exe, "call", "--connect", endpoint, "grpcipc.v1.Identity/WhoAmI")
		c.Env = append(os.Environ(), mainEnv+"=1", testutil.QuickRaceExit)
		testutil.SetCredential(c, uid, uid, nil)
		var out, errOut bytes.Buffer
		c.Stdout, c.Stderr = &out, &errOut
		c.Run()
		return c.ProcessState.ExitCode(), out.String(), errOut.String()
	}
	code, stdout, stderr := callAs(65534)
	var who map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &who) != nil || who["uid"] != "65534" || who["user"] != "nobody" || who["executable"] != exe {
		t.Errorf("uid 65534 calling WhoAmI: exit %d, %q, %q", code, stdout, stderr)
	}
	code, _, stderr = callAs(12345)
	if code != 1 {
		t.Errorf("uid 12345 exit %d, want 1", code)
	}
	oneErrorLine(t, stderr, "PermissionDenied")
	if !strings.Contains(stderr, "uid 12345 gid 12345 is not admitted") {
		t.Errorf("refusal does not name the caller: %q", stderr)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if !strings.Contains(serverLog.String(), "connection refused") || !strings.Contains(serverLog.String(), "uid 12345") {
		t.Errorf("serve did not log the refused caller: %q", serverLog.String())
	}
}

func writeKeyPair(t *testing.T, dir, name string) (cert, key string, pin string) {
	t.Helper()
	kp, err := grpcipc.NewKeyPair(name)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := kp.PEM()
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, kp.Pin.String()
}

func TestCLITLS(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	serverCert, serverKey, serverPin := writeKeyPair(t, dir, "server")
	clientCert, clientKey, _ := writeKeyPair(t, dir, "client")
	_, _, otherPin := writeKeyPair(t, dir, "other")
	endpoint := "unix://" + filepath.Join(dir, "tls.sock")

	cmd := cliCommand(t, nil, "serve", "--listen", endpoint, "--cert", serverCert, "--key", serverKey, "--client-ca", clientCert)
	cmd.Stderr = os.Stderr
	r := testutil.Start(t, cmd)
	if line, _ := r.ReadString('\n'); line != "serving "+endpoint+"\n" {
		t.Fatalf("serve said %q", line)
	}
	if line, _ := r.ReadString('\n'); line != "tls certificate sha256 "+serverPin+"\n" {
		t.Errorf("serve's second line is %q; want its certificate's pin", line)
	}
	go io.Copy(io.Discard, r)

	hello := []string{"greet.Greeter/SayHello", `{"name":"tls"}`}
	withClientCert := []string{"--cert", clientCert, "--key", clientKey}
	for _, tc := range []struct {
		name  string
		flags []string
		ok    bool
		want  string
	}{
		{"pinned", append([]string{"--pin", serverPin}, withClientCert...), true, "Hello tls"},
		{"CA", append([]string{"--cacert", serverCert}, withClientCert...), true, "Hello tls"},
		{"CA and --servername", append([]string{"--cacert", serverCert, "--servername", "server"}, withClientCert...), true, "Hello tls"},
		{"CA and another --servername", append([]string{"--cacert", serverCert, "--servername", "elsewhere"}, withClientCert...), false, "not elsewhere"},
		{"pinned and expected", append([]string{"--pin", serverPin, "--expect-server", "same-user"}, withClientCert...), true, "Hello tls"},
		{"wrong pin", append([]string{"--pin", otherPin}, withClientCert...), false, "matches no pinned SHA-256 thumbprint"},
		{"no client certificate", []string{"--pin", serverPin}, false, "Unavailable"},
		{"no TLS", nil, false, "Unavailable"},
		{"cert without key", []string{"--pin", serverPin, "--cert", clientCert}, false, "--cert and --key go together"},
		{"bad pin", []string{"--pin", "xyz"}, false, `pin "xyz": want 64 hex digits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"call", "--connect", endpoint}, tc.flags...), hello...)
			code, stdout, stderr := runCLI(t, nil, args...)
			if tc.ok {
				if code != 0 || !strings.Contains(stdout, tc.want) {
					t.Errorf("exit %d, %q, %q", code, stdout, stderr)
				}
				return
			}
			if code == 0 {
				t.Fatalf("succeeded: %q", stdout)
			}
			oneErrorLine(t, stderr, tc.want)
		})
	}
}

func TestCLIExpectServer(t *testing.T) {
	testutil.RequireRoot(t)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	cmd := exec.Command(testutil.SharedExecutable(t), "serve", "--listen", endpoint, "--allow", "*")
	cmd.Env = append(os.Environ(), mainEnv+"=1", testutil.QuickRaceExit)
	testutil.SetCredential(cmd, testutil.Nobody, testutil.Nobody, nil)
	cmd.Stderr = os.Stderr
	r := testutil.Start(t, cmd)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "serving ") {
		t.Fatalf("serve as nobody said %q", line)
	}
	go io.Copy(io.Discard, r)

	code, _, stderr := runCLI(t, nil, "list", "--connect", endpoint, "--expect-server", "root")
	if code != 1 {
		t.Errorf("list expecting root from a server run by nobody: exit %d", code)
	}
	oneErrorLine(t, stderr, "untrusted server")
	if !strings.Contains(stderr, "uid 65534 (nobody)") || !strings.Contains(stderr, "expected root") {
		t.Errorf("the refusal does not name actual and expected: %q", stderr)
	}
	if code, stdout, stderr := runCLI(t, nil, "list", "--connect", endpoint, "--expect-server", "user:nobody"); code != 0 || !strings.Contains(stdout, "greet.Greeter") {
		t.Errorf("list expecting nobody: exit %d, %q, %q", code, stdout, stderr)
	}
}

// TestCallPythonServer: grpcipc call, with --proto for a server that has no
// reflection, against Python grpcio over a Unix socket.
func TestCallPythonServer(t *testing.T) {
	path := filepath.Join(testutil.ShortTempDir(t), "py.sock")
	testutil.StartPythonServer(t, filepath.Join("..", "..", "testdata", "interop"), "unix://"+path)
	proto := filepath.Join("..", "..", "proto", "greet", "greet.proto")
	code, stdout, stderr := runCLI(t, nil, "call", "--connect", "unix://"+path, "--proto", proto, "greet.Greeter/SayHello", `{"name":"cli"}`)
	if code != 0 || !strings.Contains(stdout, `"Hello cli from python"`) {
		t.Errorf("call --proto to Python: exit %d, %q, %q", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, nil, "list", "--connect", "unix://"+path, "--proto", proto)
	if code != 0 || stdout != "greet.Greeter\n" {
		t.Errorf("list --proto: exit %d, %q", code, stdout)
	}
	// Without --proto the call needs reflection, which this server lacks.
	code, _, stderr = runCLI(t, nil, "call", "--connect", "unix://"+path, "greet.Greeter/SayHello")
	if code != 1 {
		t.Errorf("call without --proto: exit %d", code)
	}
	oneErrorLine(t, stderr, "Unimplemented")
}

func TestBench(t *testing.T) {
	tmp := testutil.ShortTempDir(t)
	out := testutil.ShortTempDir(t)
	jsonFile, chartFile := filepath.Join(out, "b.json"), filepath.Join(out, "b.svg")
	code, stdout, stderr := runCLI(t, []string{"TMPDIR=" + tmp}, "bench", "--quick", "--reps", "1", "--json", jsonFile, "--chart", chartFile)
	if code != 0 {
		t.Fatalf("bench exited %d: %s %s", code, stdout, stderr)
	}
	t.Logf("bench printed:\n%s", stdout)
	for _, want := range []string{"vs tcp", "unary 1 KiB", "throughput 1 KiB x32", "stream 1 MiB", "raw unix", "raw-alloc unix", "grpc-go tcp", "grpc-go unix", "grpcipc unix", "grpcipc-http2 unix", "grpcipc unix-abstract", "64 MiB heaps", "allocs", "range: none with one round"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
	// A summary per workload (4 of them, the stream with two heaps), and
	// lines of at most 100 columns.
	if n := strings.Count(stdout, "  summary: fast path "); n != 5 {
		t.Errorf("%d summary lines, want 5", n)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if n := utf8.RuneCountInString(line); n > 100 {
			t.Errorf("a line of %d columns: %s", n, line)
		}
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var results []map[string]any
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatalf("--json: %v", err)
	}
	// 3 workloads on 6 targets (raw-alloc streams only; grpcipc-http2 is
	// grpcipc's server with a client that asks for HTTP/2), the stream on 7
	// targets with each heap.
	if len(results) != 3*6+2*7 {
		t.Errorf("--json has %d results, want %d", len(results), 3*6+2*7)
	}
	median := func(r map[string]any, k string) float64 {
		f, _ := r[k].(map[string]any)
		v, _ := f["median"].(float64)
		return v
	}
	for _, r := range results {
		for _, k := range []string{"stack", "transport", "workload", "callers", "size_bytes", "heap", "p50_us", "p99_us", "calls_per_s", "mb_per_s", "cpu_us_per_call", "allocs_per_call", "rounds"} {
			if _, ok := r[k]; !ok {
				t.Errorf("result %v lacks %s", r, k)
			}
		}
		for _, k := range []string{"p50_us", "calls_per_s", "cpu_us_per_call"} {
			f, ok := r[k].(map[string]any)
			if _, hasMin := f["min"]; !ok || !hasMin || f["max"] == nil {
				t.Errorf("%s of %v is not {median, min, max}", k, r)
			}
		}
		if r["workload"] == "unary" && median(r, "p50_us") <= 0 || r["workload"] == "stream" && median(r, "mb_per_s") <= 0 || median(r, "cpu_us_per_call") <= 0 {
			t.Errorf("result measured nothing: %v", r)
		}
	}
	svg, err := os.ReadFile(chartFile)
	if err != nil || !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("grpcipc unix")) || bytes.Contains(svg, []byte(`fill=""`)) {
		t.Errorf("--chart wrote %d bytes: %v", len(svg), err)
	}
	for d := xml.NewDecoder(bytes.NewReader(svg)); ; {
		if _, err := d.Token(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("--chart wrote no XML: %v", err)
			}
			break
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("bench left %v in its temporary directory", ents)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--chart", "x.png"}, "--chart writes SVG"},
		{[]string{"bench", "--reps", "0"}, "--reps must be from 1 to 100"},
	} {
		code, _, stderr := runCLI(t, nil, tc.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		oneErrorLine(t, stderr, tc.want)
	}
}
