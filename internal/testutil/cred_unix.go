//go:build unix

package testutil

import (
	"os"
	"os/exec"
	"syscall"
)

func setCredential(cmd *exec.Cmd, uid, gid int) {
	if uid == os.Geteuid() {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// An empty Groups clears the supplementary groups inherited from root.
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
	}
}
