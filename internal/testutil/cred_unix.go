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
	SetCredential(cmd, uid, gid, nil)
}

// SetCredential makes cmd run as uid:gid with exactly the supplementary
// groups given (none for nil: root's are never inherited).
func SetCredential(cmd *exec.Cmd, uid, gid int, groups []int) {
	gs := []uint32{}
	for _, g := range groups {
		gs = append(gs, uint32(g))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: gs},
	}
}
