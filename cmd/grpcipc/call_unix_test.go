//go:build unix

package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

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

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
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
