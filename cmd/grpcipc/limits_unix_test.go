//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
)

// TestMaxTimeStandardInputOpen: --max-time bounds reading the requests
// from standard input: with a standard input that stays open (a pipe this
// test never closes while the command runs), "call -d @ --max-time 1s"
// exits within a few seconds with DeadlineExceeded (64+4), whatever the
// method's kind; a stream's messages are still sent as they arrive (Chat
// answers the one written before --max-time passes).
func TestMaxTimeStandardInputOpen(t *testing.T) {
	endpoint := "unix://" + filepath.Join(testutil.ShortTempDir(t), "g.sock")
	startServe(t, endpoint)
	for _, tc := range []struct {
		name, method, write, stdout string
	}{
		{"unary, nothing written", "greet.Greeter/SayHello", "", ""},
		{"unary, a request written", "greet.Greeter/SayHello", `{"name": "x"}`, ""},
		{"server stream", "grpcipc.examples.v1.Echo/Expand", `{"text": "x"}`, ""},
		{"client stream", "grpcipc.examples.v1.Echo/Collect", `{"text": "x"}`, ""},
		{"bidi stream", "grpcipc.examples.v1.Echo/Chat", `{"text": "as it came"}`, `"text": "as it came"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close() // only once the command has ended
			cmd := cliCommand(t, nil, "call", "--connect", endpoint, "--max-time", "1s", "-d", "@", tc.method)
			var out, errOut bytes.Buffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = r, &out, &errOut
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			r.Close() // the command holds the read end
			if _, err := fmt.Fprint(w, tc.write); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				cmd.Wait()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("call --max-time 1s was still waiting for standard input after 10s; stdout %q, stderr %q", out.String(), errOut.String())
			}
			took := time.Since(start)
			if code := cmd.ProcessState.ExitCode(); code != 64+int(codes.DeadlineExceeded) {
				t.Errorf("exit %d; want %d (DeadlineExceeded); stdout %q, stderr %q", code, 64+int(codes.DeadlineExceeded), out.String(), errOut.String())
			}
			oneErrorLine(t, errOut.String(), "DeadlineExceeded")
			if took < time.Second || took > 5*time.Second {
				t.Errorf("the call took %v; want --max-time, 1s, give or take", took)
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q; want it to hold %q", out.String(), tc.stdout)
			}
			t.Logf("%v: %s", took.Round(time.Millisecond), strings.TrimSpace(errOut.String()))
		})
	}
}
