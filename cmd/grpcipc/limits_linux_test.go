package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestFileCaps: a --proto or --protoset file over the cap (64 MiB), a
// device that never ends (/dev/zero) or a large regular file, fails fast
// with one line that names the file and the cap, and the process does not
// grow with the file: a regular file's size is known before it is read,
// and a device is read no further than the cap. The command is killed if
// it passes 1 GiB of memory or 20 seconds.
func TestFileCaps(t *testing.T) {
	big := filepath.Join(testutil.ShortTempDir(t), "big.protoset")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 1<<30); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag, file string
		maxRSS     int64 // KiB: the cap and the runtime's own (measured: 82 and 17 MiB; with -race 230 and 38)
	}{
		{"--proto", "/dev/zero", 384 << 10},
		{"--protoset", "/dev/zero", 384 << 10},
		{"--proto", big, 128 << 10},
		{"--protoset", big, 128 << 10},
	} {
		t.Run(tc.flag+" "+filepath.Base(tc.file), func(t *testing.T) {
			// Nothing is dialled: the files are read first.
			cmd := cliCommand(t, nil, "call", "--connect", "unix:///nonexistent/g.sock", tc.flag, tc.file, "greet.Greeter/SayHello")
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				cmd.Wait()
				close(done)
			}()
			var peak int64
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
		watch:
			for {
				select {
				case <-done:
					break watch
				case <-tick.C:
					rss := vmRSS(cmd.Process.Pid)
					peak = max(peak, rss)
					if rss > 1<<20 || time.Since(start) > 20*time.Second {
						cmd.Process.Kill()
						<-done
						t.Fatalf("%s %s: still reading after %v, %d MiB resident", tc.flag, tc.file, time.Since(start).Round(time.Millisecond), rss>>10)
					}
				}
			}
			took := time.Since(start)
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				peak = max(peak, ru.Maxrss) // KiB on Linux
			}
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit %d; want 1; stderr %q", code, errOut.String())
			}
			oneErrorLine(t, errOut.String(), tc.file+": larger than 64 MiB")
			if !strings.Contains(errOut.String(), tc.flag) {
				t.Errorf("stderr %q does not name %s", errOut.String(), tc.flag)
			}
			if took > 10*time.Second {
				t.Errorf("refusing took %v", took)
			}
			if peak > tc.maxRSS {
				t.Errorf("the command peaked at %d MiB resident; want at most %d MiB", peak>>10, tc.maxRSS>>10)
			}
			t.Logf("%v, peak %d MiB resident: %s", took.Round(time.Millisecond), peak>>10, strings.TrimSpace(errOut.String()))
		})
	}
}

// vmRSS is process pid's resident memory in KiB, 0 once it is gone.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
