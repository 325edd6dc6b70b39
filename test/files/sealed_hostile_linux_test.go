package files

// The sealed-memory path against another user's client: what it sends
// where a sealed memory file is expected, and changes afterwards.

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"
)

// mapper maps the file a call carries (MapFile) and answers with the
// checksum of its bytes read twice, a moment apart, or MapFile's error.
type mapper struct {
	greetpb.UnimplementedGreeterServer
}

func (mapper) SayHello(ctx context.Context, _ *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	files := grpcipc.TakeFiles(ctx)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) != 1 {
		return nil, fmt.Errorf("%d files", len(files))
	}
	m, err := grpcipc.MapFile(files[0])
	if err != nil {
		return &greetpb.HelloReply{Message: "refused: " + err.Error()}, nil
	}
	defer m.Close()
	first := crc32.ChecksumIEEE(m.Bytes())
	time.Sleep(200 * time.Millisecond) // the sender attacks meanwhile
	again := crc32.ChecksumIEEE(m.Bytes())
	return &greetpb.HelloReply{Message: fmt.Sprintf("mapped %d bytes %08x %08x", len(m.Bytes()), first, again)}, nil
}

var sealedData = bytes.Repeat([]byte("sealed!"), 1<<16)

func init() {
	// send-memory ENDPOINT KIND: calls SayHello with a file of KIND, and
	// truncates and writes it (if it can) while the call runs; prints the
	// reply.
	testutil.RegisterHelper("send-memory", func(args []string) error {
		var f *os.File
		var err error
		memfd := func(seals int) (*os.File, error) {
			fd, err := unix.MemfdCreate("hostile", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
			if err != nil {
				return nil, err
			}
			f := os.NewFile(uintptr(fd), "memfd")
			if _, err := f.Write(sealedData); err != nil {
				return nil, err
			}
			if seals != 0 {
				if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
					return nil, err
				}
			}
			return f, nil
		}
		switch args[1] {
		case "sealed":
			f, err = grpcipc.SealedFile("ok", sealedData)
		case "unsealed":
			f, err = memfd(0)
		case "future-write":
			f, err = memfd(unix.F_SEAL_FUTURE_WRITE | unix.F_SEAL_SHRINK)
		case "write-only": // sealed against writes, not shrinking
			f, err = memfd(unix.F_SEAL_WRITE)
		case "pipe":
			var w *os.File
			f, w, err = os.Pipe()
			if w != nil {
				defer w.Close()
			}
		case "socket":
			var fds [2]int
			fds, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			f = os.NewFile(uintptr(fds[0]), "socket")
		case "directory":
			f, err = os.Open("/")
		case "regular":
			f, err = os.Open("/proc/self/exe")
		}
		if err != nil {
			return err
		}
		conn, err := grpcipc.NewClient(args[0])
		if err != nil {
			return err
		}
		defer conn.Close()
		done := make(chan struct{})
		attacks := make(chan string, 1)
		go func() {
			var ok, tries int
			for {
				select {
				case <-done:
					attacks <- fmt.Sprintf("%d of %d changes", ok, tries)
					return
				default:
				}
				tries += 2
				if unix.Ftruncate(int(f.Fd()), 0) == nil {
					ok++
				}
				if _, err := f.WriteAt([]byte("CHANGED"), 7); err == nil {
					ok++
				}
				unix.Ftruncate(int(f.Fd()), int64(len(sealedData)))
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		reply, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{}, grpcipc.WithFiles(f))
		close(done)
		fmt.Printf("%s; %s\n", reply.GetMessage()+status.Convert(err).Message(), <-attacks)
		return nil
	})
}

// TestSealedFromAnotherUser: MapFile maps only a memory file sealed
// against writes and shrinking, which the other user's attacks cannot
// change; an unsealed memfd (truncated and written while it is checked),
// one sealed only against future writes or not against shrinking, a pipe,
// a socket, a directory or a regular file is refused with ErrNotSealed,
// saying what it is; the server never faults.
func TestSealedFromAnotherUser(t *testing.T) {
	hs := serveHostile(t, 1, nobodyPolicy, mapper{})
	want := fmt.Sprintf("mapped %d bytes %08x %08x", len(sealedData), crc32.ChecksumIEEE(sealedData), crc32.ChecksumIEEE(sealedData))
	for _, tc := range []struct{ kind, words string }{
		{"sealed", want + "; 0 of"},
		{"unsealed", "not sealed: it lacks F_SEAL_WRITE and F_SEAL_SHRINK"},
		{"future-write", "not sealed: it lacks F_SEAL_WRITE"},
		{"write-only", "not sealed: it lacks F_SEAL_SHRINK"},
		{"pipe", "not sealed: a pipe, not a memory file"},
		{"socket", "not sealed: a socket, not a memory file"},
		{"directory", "not sealed: a directory, not a memory file"},
		{"regular", "not sealed: a file that cannot carry seals"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			testutil.RequireRoot(t)
			cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "send-memory", hs.endpoint, tc.kind)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("the sender: %v", err)
			}
			got := strings.TrimSpace(string(out))
			t.Log(got)
			if !strings.Contains(got, tc.words) {
				t.Errorf("got %q, want %q", got, tc.words)
			}
		})
	}
}
