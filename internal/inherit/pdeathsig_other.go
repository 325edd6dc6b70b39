//go:build unix && !linux

package inherit

import "os/exec"

// SetParentDeathSignal: only Linux has a parent-death signal; elsewhere a
// child learns of its parent's death when its connection closes.
func SetParentDeathSignal(*exec.Cmd) {}
