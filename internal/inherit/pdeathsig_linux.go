package inherit

import (
	"os/exec"
	"syscall"
)

// SetParentDeathSignal has cmd's process sent SIGTERM when the thread
// that started it ends: when the parent dies. (Go keeps the threads it
// starts processes on, unless a goroutine locked to one exits.) A signal
// the caller chose is kept.
func SetParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	}
}
