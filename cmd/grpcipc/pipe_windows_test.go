package main

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestDemoWindows: the demo runs over a named pipe.
func TestDemoWindows(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "demo", "--count", "5")
	if code != 0 {
		t.Fatalf("demo exited %d: %s%s", code, stdout, stderr)
	}
	t.Logf("demo printed:\n%s", stdout)
	for _, want := range []string{"called over npipe", "serving npipe:grpcipc-S-", `-> {message: "Hello grpcipc demo"}`,
		"transport npipe", "caller pid ", "its pipe is gone"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

func TestServeCallListPipe(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	cmd := cliCommand(t, nil, "serve", "--listen", endpoint)
	cmd.Stderr = os.Stderr
	r := testutil.Start(t, cmd)
	if line, _ := r.ReadString('\n'); line != "serving "+endpoint+"\n" {
		t.Fatalf("serve said %q", line)
	}
	go io.Copy(io.Discard, r)
	code, stdout, stderr := runCLI(t, nil, "call", "--connect", endpoint, "greet.Greeter/SayHello", `{"name":"pipe"}`)
	if code != 0 || !strings.Contains(stdout, "Hello pipe") {
		t.Errorf("call: exit %d, %q, %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, "list", "--connect", endpoint)
	if code != 0 || !strings.Contains(stdout, "grpcipc.v1.Identity") {
		t.Errorf("list: exit %d, %q, %q", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, nil, "serve", "--listen", endpoint)
	if code != 1 {
		t.Errorf("a second serve on the pipe exited %d, want 1", code)
	}
	oneErrorLine(t, stderr, "address already in use")
}

// TestDefaultPipeEndpoint: serve and call with no endpoint meet on this
// user's default pipe.
func TestDefaultPipeEndpoint(t *testing.T) {
	cmd := cliCommand(t, nil, "serve")
	cmd.Stderr = os.Stderr
	r := testutil.Start(t, cmd)
	line, _ := r.ReadString('\n')
	if !strings.HasPrefix(line, "serving npipe:grpcipc-S-") {
		t.Fatalf("serve said %q; want the default pipe", line)
	}
	go io.Copy(io.Discard, r)
	code, stdout, stderr := runCLI(t, nil, "call", "grpcipc.v1.Identity/WhoAmI")
	if code != 0 || !strings.Contains(stdout, `"transport": "npipe"`) || !strings.Contains(stdout, strings.TrimSpace(strings.TrimPrefix(line, "serving "))) {
		t.Errorf("call on the default endpoint: exit %d, %q, %q", code, stdout, stderr)
	}
}

// TestNoServerPipe: a pipe no server has made is "no server", exit 1.
func TestNoServerPipe(t *testing.T) {
	endpoint := testutil.Endpoint(t) // no server made it
	for _, args := range [][]string{{"list"}, {"call", "--http2", "greet.Greeter/SayHello"}} {
		code, _, stderr := runCLI(t, nil, append(args, "--connect", endpoint)...)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
		oneErrorLine(t, stderr, "no server at "+endpoint+" (is it running?): no pipe of that name")
	}
}
