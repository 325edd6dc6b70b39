package grpcipc_test

import (
	"os"
	"syscall"
	"testing"
)

func statGID(t *testing.T, fi os.FileInfo) uint32 {
	t.Helper()
	return fi.Sys().(*syscall.Stat_t).Gid
}
