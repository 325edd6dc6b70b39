//go:build !linux

package e2e

import (
	"os/exec"
	"testing"
)

// startIn: cgroups are Linux's.
func startIn(t *testing.T, _ *exec.Cmd, _ string) {
	t.Helper()
	t.Skip("cgroups are Linux's")
}
