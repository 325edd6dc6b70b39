//go:build unix && !linux

package grpcipc

import "os/exec"

// setParentDeathSignal: only Linux has a parent-death signal; the child's
// listener failing when the parent's end closes ends it elsewhere.
func setParentDeathSignal(*exec.Cmd) {}
