package main

import "syscall"

// childProcAttr makes the kernel stop the demo's server if the demo dies
// without stopping it (SIGKILL, say).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
