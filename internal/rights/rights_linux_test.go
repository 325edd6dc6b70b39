package rights

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns a Conn keeping files and the raw socket of its peer.
func pair(t *testing.T) (*Conn, *net.UnixConn) {
	t.Helper()
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
	mine, theirs := NewConn(conn(fds[0])), conn(fds[1])
	mine.KeepFiles()
	t.Cleanup(func() { mine.Close(); theirs.Close() })
	return mine, theirs
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// settle waits for Discard's goroutines to close what they were given,
// until this process has want descriptors open.
func settle(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for openFiles(t) > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open, want %d: received descriptors leaked", openFiles(t), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// send writes b with n descriptors (duplicates of stdin) attached.
func send(t *testing.T, c *net.UnixConn, b string, n int) {
	t.Helper()
	var oob []byte
	if n > 0 {
		fds := make([]int, n)
		for i := range fds {
			fds[i] = int(os.Stdin.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix([]byte(b), oob, nil); err != nil {
		t.Fatal(err)
	}
}

// TestTakeFiles: descriptors attached to a frame sent alone are found at
// its first byte, wherever the reads that bring the bytes cut them.
func TestTakeFiles(t *testing.T) {
	for _, size := range []int{1, 3, 64 << 10} {
		base := openFiles(t)
		c, peer := pair(t)
		send(t, peer, "aaaa", 0)
		send(t, peer, "FRAME", 3)
		send(t, peer, "bbbb", 0)
		send(t, peer, "FR2", 1)
		peer.CloseWrite()
		r := bufio.NewReaderSize(c, max(size, 16))
		var got [][]int
		for off := uint64(0); ; {
			b, err := r.ReadByte()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if b == 'F' {
				n := 3
				if off > 10 {
					n = 1
				}
				fds, err := c.TakeFiles(off, n)
				if err != nil {
					t.Fatalf("reads of %d: TakeFiles(%d, %d): %v", size, off, n, err)
				}
				got = append(got, fds)
			}
			off++
			if err := c.Stray(off); err != nil {
				t.Fatalf("reads of %d: %v", size, err)
			}
		}
		if len(got) != 2 || len(got[0]) != 3 || len(got[1]) != 1 {
			t.Fatalf("reads of %d: took %v", size, got)
		}
		for _, fds := range got {
			for _, fd := range fds {
				if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
					t.Errorf("a received descriptor is not close-on-exec (%#x, %v)", flags, err)
				}
				unix.Close(fd)
			}
		}
		c.Close()
		peer.Close()
		settle(t, base)
	}
}

// TestStrayFiles: descriptors on bytes that announce none, none where a
// frame announces some, another count, and a flood of them: refused, and
// every descriptor received is closed.
func TestStrayFiles(t *testing.T) {
	base := openFiles(t)
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, c *Conn, peer *net.UnixConn) error
	}{
		{"on bytes that announce none", func(t *testing.T, c *Conn, peer *net.UnixConn) error {
			send(t, peer, "ping", 2)
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
			return c.Stray(4)
		}},
		{"before the frame that announces them", func(t *testing.T, c *Conn, peer *net.UnixConn) error {
			send(t, peer, "ping", 2)
			io.ReadFull(c, make([]byte, 4))
			send(t, peer, "F", 0)
			io.ReadFull(c, make([]byte, 1))
			_, err := c.TakeFiles(4, 2)
			return err
		}},
		{"none with the frame that announces them", func(t *testing.T, c *Conn, peer *net.UnixConn) error {
			send(t, peer, "F", 0)
			io.ReadFull(c, make([]byte, 1))
			_, err := c.TakeFiles(0, 1)
			return err
		}},
		{"more than announced", func(t *testing.T, c *Conn, peer *net.UnixConn) error {
			send(t, peer, "F", 5)
			io.ReadFull(c, make([]byte, 1))
			_, err := c.TakeFiles(0, 4)
			return err
		}},
		{"a flood nobody claims", func(t *testing.T, c *Conn, peer *net.UnixConn) error {
			go func() {
				for range 1000 {
					if _, _, err := peer.WriteMsgUnix([]byte("x"), unix.UnixRights(int(os.Stdin.Fd())), nil); err != nil {
						return
					}
				}
			}()
			_, err := io.ReadAll(c)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := pair(t)
			err := tc.run(t, c, peer)
			if !errors.Is(err, ErrStrayFiles) {
				t.Fatalf("%v, want ErrStrayFiles", err)
			}
			t.Log(err)
			if c.Kept() {
				t.Error("descriptors still kept after the refusal")
			}
			c.Close()
			peer.Close()
			settle(t, base)
		})
	}
}

// TestDiscardUnlessKept: a Conn that does not keep files closes them.
func TestDiscardUnlessKept(t *testing.T) {
	base := openFiles(t)
	c, peer := pair(t)
	c.mu.Lock()
	c.keep = false
	c.mu.Unlock()
	send(t, peer, "abc", 10)
	if _, err := io.ReadFull(c, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	if c.Kept() {
		t.Fatal("kept descriptors without KeepFiles")
	}
	c.Close()
	peer.Close()
	settle(t, base)
}
