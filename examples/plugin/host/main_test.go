package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHostAndPlugin runs the example as its README says: the host builds
// the plugin, starts it, and each calls the other; the plugin is gone
// afterwards.
func TestHostAndPlugin(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the host builds the plugin with the go command, which is not on PATH")
	}
	var out strings.Builder
	if err := run(context.Background(), "", &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	m := regexp.MustCompile(`started the plugin: pid (\d+) `).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no plugin pid in:\n%s", got)
	}
	for _, want := range []string{
		"the plugin does not serve greet.v2.Greeter\n",
		fmt.Sprintf("the plugin says: Hello GOPHER, from plugin pid %s; the host (pid %d ", m[1], os.Getpid()),
		"protocol: grpcipc\n",
		"the plugin has exited\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the output lacks %q:\n%s", want, got)
		}
	}
}

// TestPluginAlone: the plugin started by hand says how to run it.
func TestPluginAlone(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to build the plugin")
	}
	bin := filepath.Join(t.TempDir(), "plugin")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/grpcipc/grpcipc/examples/plugin/plugin").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	cmd := exec.Command(bin)
	b, err := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(b), "go run ./examples/plugin/host") {
		t.Errorf("the plugin alone: %v, %s; want exit 2 and how to run it", err, b)
	}
}
