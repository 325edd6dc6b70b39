//go:build unix

package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
