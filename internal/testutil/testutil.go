// Package testutil holds grpcipc's test helpers: short socket paths,
// abstract names, and helper processes, also under another user.
package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// ShortTempDir returns a new directory (mode 0700) with a short path, so
// that socket paths in it stay under the 104/108-byte sun_path limit
// whatever the test's name, and removes it when the test ends.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveAll(dir); err != nil {
			t.Errorf("removing the test's directory: %v", err)
		}
	})
	return dir
}

// RemoveAll removes dir and what is in it, deepest first, with plain
// deletes: os.RemoveAll's Windows way of deleting is one Wine 8 rejects.
func RemoveAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	var paths []string
	filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return nil
	})
	var first error
	for i := len(paths) - 1; i >= 0; i-- {
		os.Chmod(paths[i], 0o700)
		if err := os.Remove(paths[i]); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = err
		}
	}
	return first
}

// Endpoint returns a fresh local endpoint for this OS, used by no other
// test: a socket path in a new short directory on Unix, a named pipe on
// Windows.
func Endpoint(t testing.TB) string {
	t.Helper()
	return endpoint(t)
}

// AbstractName returns an abstract socket name that no other test (or
// test process) uses.
func AbstractName(t testing.TB) string {
	t.Helper()
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("grpcipc-test-%d-%s", os.Getpid(), name)
}

// HelperEnv is the environment variable that tells a test binary started
// by [HelperCommand] which helper to run.
const HelperEnv = "GRPCIPC_TEST_HELPER"

// LeakOptions are goleak's options for grpcipc's test binaries: go-winio
// keeps one I/O completion goroutine for the life of the process, by
// design.
var LeakOptions = []goleak.Option{goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")}

// QuickRaceExit is an environment entry for child processes that saves
// the race detector's default second of sleep at exit (atexit_sleep_ms).
const QuickRaceExit = "GORACE=atexit_sleep_ms=0"

// Nobody is the uid and gid of the unprivileged user other-user tests run
// helpers as.
const Nobody = 65534

var (
	copyOnce sync.Once
	copyPath string
	copyErr  error
	copyDir  string
)

// RequireRoot skips the test, saying why, unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a helper process as another user (uid 65534); CI runs as root")
	}
}

// HelperCommand returns a command that runs this test binary again as the
// helper named name, with args. The test binary's TestMain must dispatch on
// [HelperEnv]. When uid is not the current one, the command runs as
// uid:gid (the test must be root: see [RequireRoot]) from a copy of the
// binary in a directory that user can read.
func HelperCommand(t testing.TB, uid, gid int, name string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if uid != os.Geteuid() {
		exe = sharedCopy(t, exe)
	}
	cmd := exec.Command(exe, append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), HelperEnv+"="+name, QuickRaceExit)
	cmd.Stderr = os.Stderr
	setCredential(cmd, uid, gid)
	return cmd
}

// SharedExecutable returns a copy of this test binary that every user can
// run, made once per test process (see [Cleanup]).
func SharedExecutable(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return sharedCopy(t, exe)
}

// sharedCopy copies the test binary, once per test process, into a
// directory every user can traverse (t.TempDir is 0700).
func sharedCopy(t testing.TB, exe string) string {
	t.Helper()
	copyOnce.Do(func() {
		copyDir, copyErr = os.MkdirTemp("", "gi-exe")
		if copyErr != nil {
			return
		}
		if copyErr = os.Chmod(copyDir, 0o755); copyErr != nil {
			return
		}
		copyPath = filepath.Join(copyDir, filepath.Base(exe))
		copyErr = copyFile(exe, copyPath)
	})
	if copyErr != nil {
		t.Fatalf("copying the test binary for another user: %v", copyErr)
	}
	return copyPath
}

// Cleanup removes what the helpers left for the whole test process (the
// shared copy of the test binary). Call it from TestMain after m.Run.
func Cleanup() {
	if copyDir != "" {
		RemoveAll(copyDir)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Start starts cmd with its stdout piped to the returned reader, and kills
// and reaps it when the test ends if the test has not waited for it.
func Start(t testing.TB, cmd *exec.Cmd) *bufio.Reader {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return bufio.NewReader(out)
}

// CopyExecutable copies this test binary to a new path every user can run,
// removed when the test ends, for tests that tell callers apart by their
// executable.
func CopyExecutable(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gi-exe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "caller")
	if err := copyFile(exe, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// HelperCommandAt is [HelperCommand] with the test binary at exe (see
// [CopyExecutable]) and, when not nil, the supplementary groups given.
func HelperCommandAt(t testing.TB, exe string, uid, gid int, groups []int, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(exe, append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), HelperEnv+"="+name, QuickRaceExit)
	cmd.Stderr = os.Stderr
	SetCredential(cmd, uid, gid, groups)
	return cmd
}
