//go:build unix

package main

import (
	"os"
	"syscall"
)

// terminate asks a process to stop gracefully.
func terminate(p *os.Process) { p.Signal(syscall.SIGTERM) }
