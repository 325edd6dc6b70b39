package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/peercred"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestServeAllowUnit: serve --allow unit:NAME admits a caller that root
// started in that system unit's cgroup, and WhoAmI tells it so; the same
// user elsewhere is refused.
func TestServeAllowUnit(t *testing.T) {
	testutil.RequireRoot(t)
	root, err := peercred.CgroupRoot()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	const unit = "grpcipc-cli-test.service"
	// A slice of this test's own (test/admission uses /system.slice): the
	// unit past the slices is the same, and no other package's test can
	// hold the slice when this one removes it.
	slice := filepath.Join(root, "grpcipc-cli-"+strconv.Itoa(os.Getpid())+".slice")
	dir := filepath.Join(slice, unit)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		for _, d := range []string{dir, slice} {
			for range 300 { // the last process may take a moment to leave
				err := os.Remove(d)
				if err == nil || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})

	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	cmd := cliCommand(t, nil, "serve", "--listen", endpoint, "--allow", "unit:"+unit)
	var serverLog bytes.Buffer
	cmd.Stderr = &serverLog
	r := testutil.Start(t, cmd)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "serving ") {
		t.Fatalf("serve said %q", line)
	}
	go io.Copy(io.Discard, r)
	exe := testutil.SharedExecutable(t)
	call := func(inUnit bool) (int, string, string) {
		c := exec.Command(exe, "call", "--connect", endpoint, "grpcipc.v1.Identity/WhoAmI")
		c.Env = append(os.Environ(), mainEnv+"=1", testutil.QuickRaceExit)
		testutil.SetCredential(c, testutil.Nobody, testutil.Nobody, nil)
		if inUnit {
			f, err := os.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			c.SysProcAttr.UseCgroupFD, c.SysProcAttr.CgroupFD = true, int(f.Fd())
		}
		var out, errOut bytes.Buffer
		c.Stdout, c.Stderr = &out, &errOut
		c.Run()
		return c.ProcessState.ExitCode(), out.String(), errOut.String()
	}
	code, stdout, stderr := call(true)
	var who map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &who) != nil || who["unit"] != unit || who["cgroup"] != strings.TrimPrefix(dir, root) {
		t.Errorf("uid 65534 in %s calling WhoAmI: exit %d, %q, %q", unit, code, stdout, stderr)
	}
	code, _, stderr = call(false)
	if code != 1 || !strings.Contains(stderr, "PermissionDenied") {
		t.Errorf("uid 65534 outside the unit: exit %d, %q", code, stderr)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}
