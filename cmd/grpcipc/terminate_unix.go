//go:build unix

package main

import (
	"os"
	"syscall"
)

// terminate asks a process to stop gracefully, and says it did.
func terminate(p *os.Process) bool {
	p.Signal(syscall.SIGTERM)
	return true
}
