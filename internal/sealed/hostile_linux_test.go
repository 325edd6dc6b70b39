package sealed

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"golang.org/x/sys/unix"
)

// The hostile sender runs as another user (uid 65534): it sends a memfd
// over the socket it inherits as descriptor 3, sealed (Create) or not, and
// then tries to change and truncate it under the receiver until the
// receiver closes the socket, and reports how its attempts ended.
func init() {
	testutil.RegisterHelper("memfd-sender", func(args []string) error {
		conn, err := net.FileConn(os.NewFile(3, "conn"))
		if err != nil {
			return err
		}
		data := bytes.Repeat([]byte("sealed!"), 1<<20)
		var f *os.File
		if args[0] == "sealed" {
			f, err = Create("hostile", data)
		} else {
			var fd int
			fd, err = unix.MemfdCreate("hostile", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
			f = os.NewFile(uintptr(fd), "memfd")
			if err == nil {
				_, err = f.Write(data)
			}
		}
		if err != nil {
			return err
		}
		if _, _, err := conn.(*net.UnixConn).WriteMsgUnix([]byte{1}, unix.UnixRights(int(f.Fd())), nil); err != nil {
			return err
		}
		// Attack until the receiver is done (it closes the socket).
		done := make(chan struct{})
		go func() { conn.Read(make([]byte, 1)); close(done) }()
		var tries, refused int
		for {
			select {
			case <-done:
				fmt.Printf("%d %d\n", tries, refused)
				return nil
			default:
			}
			tries += 3
			for _, err := range []error{
				unix.Ftruncate(int(f.Fd()), 0),
				unix.Ftruncate(int(f.Fd()), int64(len(data))+4096),
				func() error { _, err := f.WriteAt([]byte("CHANGED"), 7); return err }(),
			} {
				if errors.Is(err, unix.EPERM) {
					refused++
				}
			}
		}
	})
}

// TestHostileSender: a memfd that another user's process sends and then
// tries to change and truncate is refused unless sealed; sealed, the
// receiver reads it in place while the sender attacks, every read sees
// the bytes sent, and every attack fails.
func TestHostileSender(t *testing.T) {
	testutil.RequireRoot(t)
	for _, kind := range []string{"unsealed", "sealed"} {
		t.Run(kind, func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
			cmd := testutil.HelperCommand(t, 65534, 65534, "memfd-sender", kind)
			cmd.ExtraFiles = []*os.File{theirs}
			out := testutil.Start(t, cmd)
			theirs.Close()
			c, err := net.FileConn(mine)
			mine.Close()
			if err != nil {
				t.Fatal(err)
			}
			oob := make([]byte, unix.CmsgSpace(4))
			_, oobn, _, _, err := c.(*net.UnixConn).ReadMsgUnix(make([]byte, 1), oob)
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) != 1 {
				t.Fatalf("control messages %v (%v)", msgs, err)
			}
			got, err := unix.ParseUnixRights(&msgs[0])
			if err != nil || len(got) != 1 {
				t.Fatalf("descriptors %v (%v)", got, err)
			}
			f := os.NewFile(uintptr(got[0]), "received")
			defer f.Close()

			n, err := Check(f)
			if kind == "unsealed" {
				if !errors.Is(err, ErrNotSealed) || !strings.Contains(err.Error(), "could still change and truncate it") {
					t.Fatalf("Check of an unsealed memfd: %d, %v", n, err)
				}
				c.Close()
				if _, err := out.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
				cmd.Wait()
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := Map(f, n)
			if err != nil {
				t.Fatal(err)
			}
			defer Unmap(b)
			want := crc32.ChecksumIEEE(bytes.Repeat([]byte("sealed!"), 1<<20))
			for i := range 200 {
				if got := crc32.ChecksumIEEE(b); got != want {
					t.Fatalf("read %d: the bytes changed under the reader", i)
				}
			}
			c.Close()
			line, err := out.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			var tries, refused int
			fmt.Sscan(line, &tries, &refused)
			t.Logf("the sender tried %d changes while 200 reads ran; %d were refused (EPERM)", tries, refused)
			if tries == 0 || refused != tries {
				t.Fatalf("the sender's attacks: %d of %d refused", refused, tries)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			// The sender is gone; the memory is still there, unchanged.
			if got := crc32.ChecksumIEEE(b); got != want {
				t.Fatal("the bytes changed after the sender exited")
			}
		})
	}
}
