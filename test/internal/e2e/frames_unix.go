//go:build unix

package e2e

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SendWithFiles writes frame alone with files attached (SCM_RIGHTS), as a
// sender of a FILES frame does.
func (rf *RawFast) SendWithFiles(t *testing.T, frame []byte, files ...*os.File) {
	t.Helper()
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	rf.C.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := rf.C.WriteMsgUnix(frame, unix.UnixRights(fds...), nil); err != nil {
		t.Fatalf("sending with %d files: %v", len(files), err)
	}
}
