package testutil

import "os/exec"

// setCredential does nothing on Windows: tests there run helpers as the
// same user.
func setCredential(*exec.Cmd, int, int) {}

// SetCredential does nothing on Windows.
func SetCredential(*exec.Cmd, int, int, []int) {}
