//go:build unix

package main

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

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
