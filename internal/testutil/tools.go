package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireEnv, set to 1 (as .ci/run does), turns the skips of tests whose
// outside tools are missing into failures.
const RequireEnv = "GRPCIPC_REQUIRE_INTEROP"

// Tool returns the path of an outside program a test needs, looked up on
// PATH and in $GOPATH/bin; when it is missing the test skips, saying how
// to install it, or fails under [RequireEnv].
func Tool(t testing.TB, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	if p := filepath.Join(gopath, "bin", name); gopath != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	missing(t, name+" is not installed ("+install+")")
	return ""
}

// Python returns a Python 3 that has grpcio, or skips as [Tool] does.
func Python(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import grpc").Run() == nil {
			return p
		}
	}
	missing(t, "no python3 with grpcio (apt-get install python3-grpcio; use /usr/bin/python3)")
	return ""
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s, and %s=1 requires it", why, RequireEnv)
	}
	t.Skip(why)
}

// StartPythonServer runs server.py of the module's testdata/interop (in
// dir, that folder as seen from the test's package) on the grpcio target
// until the test ends, and waits until it serves.
func StartPythonServer(t testing.TB, dir, target string) {
	t.Helper()
	cmd := exec.Command(Python(t), "server.py", target)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := Start(t, cmd)
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("python server said %q, %v", line, err)
	}
}
