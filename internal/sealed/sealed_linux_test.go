package sealed

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCreateMapRead(t *testing.T) {
	for _, size := range []int{0, 1, 4096, 3<<20 + 17} {
		data := bytes.Repeat([]byte{byte(size), 0xa5, 7}, size/3+1)[:size]
		f, err := Create("test", data)
		if err != nil {
			t.Fatal(err)
		}
		seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
		if err != nil || seals&all != all {
			t.Fatalf("seals %#x (%v), want %#x set", seals, err, all)
		}
		// Nobody can change it: not through the descriptor, nor by
		// truncating or growing it, nor through a writable mapping.
		if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, unix.EPERM) {
			t.Errorf("%d bytes: a write through the descriptor: %v, want EPERM", size, err)
		}
		for _, to := range []int64{int64(size) - 1, int64(size) + 1} {
			if to < 0 {
				continue
			}
			if err := unix.Ftruncate(int(f.Fd()), to); !errors.Is(err, unix.EPERM) {
				t.Errorf("%d bytes: truncating to %d: %v, want EPERM", size, to, err)
			}
		}
		if size > 0 {
			if _, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, unix.EPERM) {
				t.Errorf("%d bytes: a writable shared mapping: %v, want EPERM", size, err)
			}
		}
		n, err := Check(f)
		if err != nil || n != size {
			t.Fatalf("Check: %d, %v; want %d", n, err, size)
		}
		b, err := Map(f, n)
		if err != nil {
			t.Fatal(err)
		}
		f.Close() // the mapping keeps the memory
		if !bytes.Equal(b, data) {
			t.Fatalf("%d bytes: the mapping differs from what was written", size)
		}
		if err := Unmap(b); err != nil {
			t.Fatal(err)
		}
	}
}

// memfd returns an unsealed memfd holding "hello", whose seals are then
// those given.
func memfd(t *testing.T, seals int) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("t", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "memfd:t")
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if seals != 0 {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// TestCheckRefuses: every file that its sender could change or truncate
// under a reader, and every file that is not a memory file, is refused,
// and the error says why.
func TestCheckRefuses(t *testing.T) {
	dir := t.TempDir()
	regular, err := os.Create(filepath.Join(dir, "regular"))
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sock, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	shm, err := os.CreateTemp("/dev/shm", "grpcipc-sealed-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(shm.Name())
	defer shm.Close()

	for _, tc := range []struct {
		name string
		f    *os.File
		want string
	}{
		{"unsealed memfd", memfd(t, 0), "lacks F_SEAL_WRITE and F_SEAL_SHRINK, so its sender could still change and truncate it"},
		{"memfd sealed against future writes only", memfd(t, unix.F_SEAL_FUTURE_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW), "lacks F_SEAL_WRITE, so its sender could still change it"},
		{"memfd sealed against writes, not shrinking", memfd(t, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SEAL), "lacks F_SEAL_SHRINK, so its sender could still truncate it"},
		{"memfd with only F_SEAL_SEAL", memfd(t, unix.F_SEAL_SEAL), "lacks F_SEAL_WRITE and F_SEAL_SHRINK"},
		{"regular file", regular, "cannot carry seals, not a memfd"},
		{"tmpfs file in /dev/shm", shm, "lacks F_SEAL_WRITE and F_SEAL_SHRINK"},
		{"directory", d, "a directory, not a memory file"},
		{"pipe", pr, "a pipe, not a memory file"},
		{"socket", sock, "a socket, not a memory file"},
	} {
		n, err := Check(tc.f)
		if !errors.Is(err, ErrNotSealed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check: %d, %v; want ErrNotSealed saying %q", tc.name, n, err, tc.want)
		}
	}
	if _, err := Check(nil); err == nil {
		t.Error("Check(nil): no error")
	}
	closed := memfd(t, all)
	closed.Close()
	if _, err := Check(closed); err == nil {
		t.Error("Check of a closed file: no error")
	}
}

// TestMapWriteOnly: a sealed memfd reopened for writing only (through
// /proc, as a sender could hand it) cannot be mapped for reading.
func TestMapWriteOnly(t *testing.T) {
	f, err := Create("w", []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wo, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wo.Close()
	n, err := Check(wo)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := Map(wo, n); !errors.Is(err, unix.EACCES) {
		Unmap(b)
		t.Fatalf("mapping a write-only descriptor: %v, want EACCES", err)
	}
}

// BenchmarkMapRead: map a sealed 64 MiB file and read every byte, as a
// receiver does.
func BenchmarkMapRead(b *testing.B) {
	const size = 64 << 20
	f, err := Create("bench", make([]byte, size))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(size)
	for b.Loop() {
		m, err := Map(f, size)
		if err != nil {
			b.Fatal(err)
		}
		var x byte
		for i := 0; i < len(m); i += 64 {
			x ^= m[i]
		}
		_ = x
		Unmap(m)
	}
}
