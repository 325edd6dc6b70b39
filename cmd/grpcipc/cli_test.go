package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

func cliCommand(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), mainEnv+"=1", testutil.QuickRaceExit), env...)
	return cmd
}

// startServe starts "grpcipc serve" and waits until it is serving.
func startServe(t *testing.T, endpoint string) *exec.Cmd {
	t.Helper()
	cmd := cliCommand(t, nil, "serve", "--listen", endpoint)
	cmd.Stderr = os.Stderr
	r := testutil.Start(t, cmd)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "serving ") {
		t.Fatalf("serve said %q, %v; want serving ENDPOINT", line, err)
	}
	go io.Copy(io.Discard, r)
	return cmd
}

// runCLI runs grpcipc to its end and returns its exit status and output.
func runCLI(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := cliCommand(t, env, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("grpcipc %v did not finish in 60s", args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

func oneErrorLine(t *testing.T, stderr, want string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "grpcipc: ") {
		t.Errorf("stderr is not one grpcipc: line: %q", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not say %q", stderr, want)
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Errorf("stderr has a stack trace: %q", stderr)
	}
}

// TestHelpSpellsFlagsOneWay: every command's usage line and flag list
// spell a flag the same way (--word, -x for a letter), every flag in the
// usage line exists, and no internal flag or variable shows.
func TestHelpSpellsFlagsOneWay(t *testing.T) {
	flagRE := regexp.MustCompile(`(?:^|[\s\[])(-{1,2})([a-zA-Z][a-z0-9-]*)`)
	for _, cmd := range []string{"serve", "call", "list", "describe", "endpoint", "demo", "bench"} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{cmd, "--help"}, &out, &errOut); code != 0 {
			t.Fatalf("%s --help: exit %d: %s", cmd, code, errOut.String())
		}
		usageLine, rest, _ := strings.Cut(out.String(), "\n")
		_, list, hasFlags := strings.Cut(rest, "\nFlags:\n")
		defined := map[string]bool{}
		if hasFlags {
			for _, line := range strings.Split(list, "\n") {
				m := regexp.MustCompile(`^  (-{1,2})(\S+)`).FindStringSubmatch(line)
				if m == nil {
					continue
				}
				if want := dashes(m[2]); m[1] != want {
					t.Errorf("%s --help lists %s%s; want %s%s", cmd, m[1], m[2], want, m[2])
				}
				defined[m[2]] = true
			}
		}
		if len(defined) == 0 && cmd != "endpoint" {
			t.Errorf("%s --help lists no flags:\n%s", cmd, out.String())
		}
		for _, m := range flagRE.FindAllStringSubmatch(usageLine, -1) {
			if want := dashes(m[2]); m[1] != want {
				t.Errorf("%s's usage line spells %s%s; want %s%s", cmd, m[1], m[2], want, m[2])
			}
			if !defined[m[2]] {
				t.Errorf("%s's usage line names %s%s, which its flag list does not have", cmd, m[1], m[2])
			}
		}
		for _, internal := range []string{"serve-child", benchChildEnv, mainEnv} {
			if strings.Contains(out.String(), internal) {
				t.Errorf("%s --help shows the internal %q", cmd, internal)
			}
		}
	}
}

func dashes(name string) string {
	if len(name) == 1 {
		return "-"
	}
	return "--"
}

// TestUnknownCommandSuggests: a mistyped command gets the one it is close
// to, a command far from all gets none; both are usage errors (exit 2).
func TestUnknownCommandSuggests(t *testing.T) {
	for _, tc := range []struct{ typed, want string }{
		{"cal", `unknown command "cal": did you mean call?`},
		{"lsit", `unknown command "lsit": did you mean list?`},
		{"descibe", `unknown command "descibe": did you mean describe?`},
		{"bogus", `unknown command "bogus"; run grpcipc --help`},
	} {
		code, stdout, stderr := runCLI(t, nil, tc.typed)
		if code != 2 || stdout != "" {
			t.Errorf("grpcipc %s: exit %d, stdout %q; want 2", tc.typed, code, stdout)
		}
		oneErrorLine(t, stderr, tc.want)
	}
	for typed, want := range map[string]string{
		"serv": "serve", "Call": "call", "endpoints": "endpoint", "dmeo": "demo", "desc": "describe",
		"benchmark": "bench", "hlep": "help", "versoin": "version", "lis": "list",
		"callback": "call", "de": "", "ca": "", "x": "", "": "", "status": "", "run": "",
	} {
		if got := strings.Join(suggest(typed, commands), " or "); got != want {
			t.Errorf("suggest(%q) = %q, want %q", typed, got, want)
		}
	}
	// Every command suggested is one run knows.
	for _, c := range commands {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{c, "--help"}, &out, &errOut); code != 0 {
			t.Errorf("%s --help: exit %d, %s", c, code, errOut.String())
		}
	}
}

// TestEndpointSystem: endpoint --system prints SystemEndpoint, beside
// endpoint's DefaultEndpoint, and its help says when to use which.
func TestEndpointSystem(t *testing.T) {
	for _, args := range [][]string{{"--system"}, {"--system", "myd"}, {"myd", "--system"}} {
		app := "grpcipc"
		for _, a := range args {
			if a != "--system" {
				app = a
			}
		}
		want, err := grpcipc.SystemEndpoint(app)
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runCLI(t, nil, append([]string{"endpoint"}, args...)...)
		if code != 0 || stdout != want.String()+"\n" {
			t.Errorf("endpoint %v: exit %d, %q, %q; want %s", args, code, stdout, stderr, want)
		}
	}
	code, _, stderr := runCLI(t, nil, "endpoint", "--system", "a/b")
	if code != 1 {
		t.Errorf("endpoint --system a/b: exit %d, want 1", code)
	}
	oneErrorLine(t, stderr, "application name may hold only")
	code, stdout, _ := runCLI(t, nil, "endpoint", "--help")
	help := strings.Join(strings.Fields(stdout), " ")
	for _, want := range []string{"Usage: grpcipc endpoint [--system] [APP]", "per-user endpoint (grpcipc.DefaultEndpoint",
		"serves its own user", "machine-wide endpoint (grpcipc.SystemEndpoint)", "a daemon that serves other users", "--system"} {
		if code != 0 || !strings.Contains(help, want) {
			t.Errorf("endpoint --help (exit %d) does not say %q:\n%s", code, want, stdout)
		}
	}
}
