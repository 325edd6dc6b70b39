package sealed

import (
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// Needed are the seals a file must carry to be read in place: no write
// (F_SEAL_WRITE, not F_SEAL_FUTURE_WRITE, which lets mappings made before
// it write on) and no shrinking (which would turn reads past the new end
// into SIGBUS).
const Needed = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK

// all are the seals Create sets: Needed, no growth, and no more seals.
const all = Needed | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// Create returns a memfd named name (a label for /proc and debugging; it
// need not be unique) holding a copy of data, sealed against writes,
// growth, shrinking and further seals, and read from its start. It is
// close-on-exec, and not executable where the kernel can say so
// (MFD_NOEXEC_SEAL, Linux 6.3).
func Create(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create %q: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := fill(f, data); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// fill writes data to new memfd f, seals it, and rewinds it.
func fill(f *os.File, data []byte) error {
	if len(data) > 0 {
		// The size first: one allocation of the file's pages as they are
		// written, and ENOSPC or a cgroup's limit before any copy.
		if err := unix.Ftruncate(int(f.Fd()), int64(len(data))); err != nil {
			return fmt.Errorf("sizing %s to %d bytes: %w", f.Name(), len(data), err)
		}
		for off := 0; off < len(data); {
			n, err := f.WriteAt(data[off:], int64(off))
			if err != nil {
				return fmt.Errorf("writing %s: %w", f.Name(), err)
			}
			off += n
		}
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, all); err != nil {
		return fmt.Errorf("sealing %s: %w", f.Name(), err)
	}
	return nil
}

// Check says how many bytes f holds if it can be read in place: a regular
// memory file that carries the Needed seals. The seals cannot be taken
// off, so what Check saw holds for as long as f is open.
func Check(f *os.File) (int, error) {
	if f == nil {
		return 0, errors.New("no file")
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	var (
		st    unix.Stat_t
		seals int
		serr  error
	)
	if err := sc.Control(func(fd uintptr) {
		if serr = unix.Fstat(int(fd), &st); serr != nil {
			serr = fmt.Errorf("fstat: %w", serr)
			return
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			serr = fmt.Errorf("%w: a %s, not a memory file", ErrNotSealed, kind(st.Mode))
			return
		}
		seals, serr = unix.FcntlInt(fd, unix.F_GET_SEALS, 0)
		if serr != nil {
			// EINVAL: a file system without seals (only memfds and
			// hugetlbfs files have them).
			serr = fmt.Errorf("%w: a file that cannot carry seals, not a memfd (F_GET_SEALS: %w)", ErrNotSealed, serr)
		}
	}); err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if serr != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), serr)
	}
	if missing := Needed &^ seals; missing != 0 {
		return 0, fmt.Errorf("%s: %w: it lacks %s, so its sender could still %s it while it is read", f.Name(), ErrNotSealed, sealNames(missing), sealVerbs(missing))
	}
	if st.Size < 0 || uint64(st.Size) > math.MaxInt {
		return 0, fmt.Errorf("%s: a size of %d bytes cannot be mapped", f.Name(), st.Size)
	}
	return int(st.Size), nil
}

// Map maps size bytes of f, which Check passed, read-only and shared.
func Map(f *os.File, size int) ([]byte, error) {
	if size == 0 {
		return []byte{}, nil // mmap refuses a length of 0
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	var (
		b    []byte
		merr error
	)
	if err := sc.Control(func(fd uintptr) {
		// MAP_POPULATE: the pages are mapped in this one call rather than
		// by a fault on each at its first read.
		b, merr = unix.Mmap(int(fd), 0, size, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	}); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if merr != nil {
		// EACCES: the descriptor is not open for reading.
		return nil, fmt.Errorf("mapping %s: %w", f.Name(), merr)
	}
	return b, nil
}

// Unmap unmaps what Map mapped.
func Unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFIFO:
		return "pipe"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFLNK:
		return "symbolic link"
	}
	return "file of an unknown kind"
}

func sealNames(s int) string {
	var names []string
	if s&unix.F_SEAL_WRITE != 0 {
		names = append(names, "F_SEAL_WRITE")
	}
	if s&unix.F_SEAL_SHRINK != 0 {
		names = append(names, "F_SEAL_SHRINK")
	}
	return join(names)
}

func sealVerbs(s int) string {
	var verbs []string
	if s&unix.F_SEAL_WRITE != 0 {
		verbs = append(verbs, "change")
	}
	if s&unix.F_SEAL_SHRINK != 0 {
		verbs = append(verbs, "truncate")
	}
	return join(verbs)
}

func join(s []string) string {
	if len(s) == 2 {
		return s[0] + " and " + s[1]
	}
	return s[0]
}

// NewWritable returns a new memfd of size bytes named name, and a shared
// writable mapping of it to fill in place; Seal ends the writing.
func NewWritable(name string, size int) (*os.File, []byte, error) {
	if size < 0 {
		return nil, nil, fmt.Errorf("a size of %d bytes", size)
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("memfd_create %q: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if size == 0 {
		return f, []byte{}, nil
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("sizing %s to %d bytes: %w", f.Name(), size, err)
	}
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mapping %s: %w", f.Name(), err)
	}
	return f, b, nil
}

// Seal unmaps b, NewWritable's mapping of f, seals f against writes,
// growth, shrinking and further seals, and rewinds it.
func Seal(f *os.File, b []byte) error {
	if err := Unmap(b); err != nil {
		return err
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, all); err != nil {
		return fmt.Errorf("sealing %s: %w", f.Name(), err)
	}
	return nil
}
