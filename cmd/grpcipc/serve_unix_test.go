//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

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
		{[]string{"serve", "--listen", sock, "--allow", "unit:backup"}, 2, `"backup" is not the name of a systemd unit`},
		{[]string{"serve", "--listen", sock, "--allow", "cgroup:system.slice"}, 2, "is not a clean absolute path"},
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
