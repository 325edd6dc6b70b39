package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv("HELLO_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHello runs the program in a process of its own: the reply names that
// process, and the socket is gone when it ends.
func TestHello(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HELLO_RUN_MAIN=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	want := fmt.Sprintf("Hello gopher (pid %d ", cmd.Process.Pid)
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "protocol grpcipc") {
		t.Errorf("output %q does not say %q and protocol grpcipc", out.String(), want)
	}
}

// TestREADMEShowsThisProgram: the README's program is this file, from its
// imports on, so that what a reader copies compiles and runs.
func TestREADMEShowsThisProgram(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(src), "package main\n")
	if !ok {
		t.Fatal("main.go has no package clause")
	}
	if !strings.Contains(string(readme), "```go\npackage main\n"+body+"```\n") {
		t.Error("README.md does not show examples/hello/main.go from `package main` on, as written: copy the file into its go block")
	}
}
