package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestServeActivated: systemd's own systemd-socket-activate holds the
// socket and starts "grpcipc serve --activated" on the first connection;
// grpcipc and grpcurl call it there. A socket file others may write is
// served, with a warning that the policy admits only this user.
func TestServeActivated(t *testing.T) {
	activate := testutil.Tool(t, "systemd-socket-activate", "apt-get install systemd")
	grpcurl := testutil.Tool(t, "grpcurl", "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(testutil.ShortTempDir(t), "act.sock")
	cmd := exec.Command(activate, "-l", sock, "-E", mainEnv+"=1", "-E", testutil.QuickRaceExit, exe, "serve", "--activated")
	stderr := &syncWriter{}
	cmd.Stderr = stderr
	out := testutil.Start(t, cmd)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-socket-activate made no socket: %s", stderr.String())
		}
	}
	if err := os.Chmod(sock, 0o666); err != nil { // as SocketMode=0666 would
		t.Fatal(err)
	}
	// The first connection starts grpcipc serve.
	code, stdout, errOut := runCLI(t, nil, "call", "--connect", "unix://"+sock, "-d", `{"text": "activated"}`, "grpcipc.examples.v1.Echo/Say")
	if code != 0 || !strings.Contains(stdout, `"text": "activated"`) {
		t.Fatalf("grpcipc call: exit %d, %q, %s; serve said: %s", code, stdout, errOut, stderr.String())
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "serving unix://"+sock+"\n" {
		t.Errorf("serve --activated said %q, %v", line, err)
	}
	g := exec.Command(grpcurl, "-plaintext", "-unix", "-d", `{"text": "from grpcurl"}`, sock, "grpcipc.examples.v1.Echo/Say")
	if b, err := g.CombinedOutput(); err != nil || !strings.Contains(string(b), `"text": "from grpcurl"`) {
		t.Errorf("grpcurl: %v, %s", err, b)
	}
	if !strings.Contains(stderr.String(), "mode 0666") || !strings.Contains(stderr.String(), "SocketMode=0600") {
		t.Errorf("serve did not warn of the socket's mode 0666: %s", stderr.String())
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if _, err := os.Stat(sock); err != nil {
		t.Logf("the socket is gone after systemd-socket-activate exited: %v", err)
	}
}

// TestServeActivatedMisuse: --activated outside socket activation, or
// with --listen, fails saying why.
func TestServeActivatedMisuse(t *testing.T) {
	code, _, stderr := runCLI(t, nil, "serve", "--activated")
	if code != 1 {
		t.Errorf("serve --activated without systemd: exit %d, want 1", code)
	}
	oneErrorLine(t, stderr, "no sockets were handed to this process by systemd")
	code, _, stderr = runCLI(t, nil, "serve", "--activated", "--listen", "unix:///tmp/x.sock")
	if code != 2 {
		t.Errorf("serve --activated --listen: exit %d, want 2", code)
	}
	oneErrorLine(t, stderr, "not both")
}

// TestSystemdUnits: examples/systemd's units pass systemd-analyze verify
// (with ExecStart pointed at this binary, as grpcipc is not installed
// here), keep the socket 0600 and start serve --activated.
func TestSystemdUnits(t *testing.T) {
	analyze := testutil.Tool(t, "systemd-analyze", "apt-get install systemd")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"grpcipc-demo.socket", "grpcipc-demo.service"} {
		b, err := os.ReadFile(filepath.Join("../../examples/systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		switch {
		case strings.HasSuffix(name, ".socket") && !strings.Contains(text, "\nSocketMode=0600\n"):
			t.Errorf("%s does not set SocketMode=0600", name)
		case strings.HasSuffix(name, ".service") && !strings.Contains(text, "\nExecStart=/usr/local/bin/grpcipc serve --activated\n"):
			t.Errorf("%s does not start /usr/local/bin/grpcipc serve --activated", name)
		}
		text = strings.ReplaceAll(text, "/usr/local/bin/grpcipc", exe)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, p)
	}
	// It exits 0 on unknown keys, saying so: any word from it is a fault.
	if b, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput(); err != nil || len(b) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, b)
	}
}
