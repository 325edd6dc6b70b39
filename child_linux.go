package grpcipc

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the child sent SIGTERM when the thread that
// started it ends: when the parent dies. (Go keeps the threads it starts
// processes on, unless a goroutine locked to one exits.)
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	}
}
