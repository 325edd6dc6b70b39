package fastio

import (
	"bufio"
	"io"
	"net"
	"os"
	"testing"

	"github.com/grpcipc/grpcipc/internal/rights"
	"golang.org/x/sys/unix"
)

// TestWriterAttachFiles: frames with descriptors go out alone, in order
// with the others written in the same batch, and the receiver finds
// each frame's descriptors at its first byte; the Writer closes its
// duplicates.
func TestWriterAttachFiles(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	sender, receiver := rights.NewConn(conn(fds[0])), rights.NewConn(conn(fds[1]))
	defer sender.Close()
	defer receiver.Close()
	receiver.KeepFiles()
	if !CanCarryFiles(sender) {
		t.Fatal("a rights.Conn cannot carry files")
	}
	before := countFDs(t)

	w := &Writer{Conn: sender}
	b := w.Lock()
	*b = append(*b, "aaaa"...)
	at := len(*b)
	*b = append(*b, "F1"...)
	dups, err := DupFiles([]*os.File{os.Stdin, os.Stdout})
	if err != nil {
		t.Fatal(err)
	}
	w.AttachFiles(at, dups)
	*b = append(*b, "bb"...)
	at = len(*b)
	*b = append(*b, "F2"...)
	dups, err = DupFiles([]*os.File{os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	w.AttachFiles(at, dups)
	if err := w.Unlock(); err != nil {
		t.Fatal(err)
	}
	if n := countFDs(t); n != before {
		t.Errorf("%d descriptors open after the write, %d before: the Writer kept its duplicates", n, before)
	}
	sender.CloseWrite()

	r := bufio.NewReader(receiver)
	var got []int
	var text []byte
	for off := uint64(0); ; off++ {
		c, err := r.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		text = append(text, c)
		if c == 'F' {
			n := 2
			if off > 6 {
				n = 1
			}
			fds, err := receiver.TakeFiles(off, n)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, len(fds))
			closeFDs(fds)
		}
		if err := receiver.Stray(off + 1); err != nil {
			t.Fatal(err)
		}
	}
	if string(text) != "aaaaF1bbF2" || len(got) != 2 || got[0] != 2 || got[1] != 1 {
		t.Fatalf("received %q with descriptors %v", text, got)
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
