//go:build unix

package sockfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenBacklog is the accept queue asked for; the kernel caps it at
// net.core.somaxconn (Linux) or kern.ipc.somaxconn (macOS, BSD).
const listenBacklog = 4096

// Listen creates the Unix socket path and listens on it: the directory is
// checked, or created with the search permission mode needs (and group gid
// unless -1); a stale socket at path is removed and anything else there
// refused; then socket, bind, chown, chmod and listen, in that order, so
// that it accepts no one before its owner and mode are right.
func Listen(ctx context.Context, path string, mode fs.FileMode, gid int) (*Listener, error) {
	dir := socketDir(path)
	createdDir, err := prepareSocketDir(dir, mode, gid)
	if err != nil {
		return nil, err
	}
	l, err := bindUnixPath(ctx, path, mode, gid)
	if err != nil {
		if createdDir {
			os.Remove(dir)
		}
		return nil, err
	}
	if createdDir {
		l.dir = dir
	}
	return l, nil
}

// socketDir is path without its last element, not cleaned: "a/link/../b"
// must be checked as the kernel will resolve it, link first, and
// filepath.Dir would drop the link.
func socketDir(path string) string {
	i := strings.LastIndexByte(path, '/')
	switch {
	case i < 0:
		return "."
	case i == 0:
		return "/"
	}
	return path[:i]
}

// socketDirMode is the mode of a directory Listen creates for a socket of
// the given mode: search permission for whoever the socket's mode admits,
// and nothing more (no one may list or write it).
func socketDirMode(mode fs.FileMode) fs.FileMode {
	switch {
	case mode&0o007 != 0:
		return 0o711
	case mode&0o070 != 0:
		return 0o710
	}
	return 0o700
}

// prepareSocketDir makes sure dir exists and that no other user can swap
// the socket in it, or dir itself, or any directory or link on the way to
// it (see checkSocketDir). A directory it creates is given the search
// permission the socket's mode needs (socketDirMode), and group gid unless
// it is -1; an existing one is left as it is. It reports whether it created
// dir.
func prepareSocketDir(dir string, mode fs.FileMode, gid int) (created bool, err error) {
	euid := os.Geteuid()
	for attempt := 0; ; attempt++ {
		exists, err := checkSocketDir(dir, euid)
		if err != nil || exists {
			return false, err
		}
		// Only we may enter it until its group and mode are right.
		err = os.Mkdir(dir, 0o700)
		if err == nil {
			break
		}
		// Someone made it since it was checked: check it again, once.
		if !errors.Is(err, fs.ErrExist) || attempt > 0 {
			return false, fmt.Errorf("socket directory: %w", err)
		}
	}
	fail := func(err error) (bool, error) {
		os.Remove(dir)
		return false, err
	}
	if gid >= 0 {
		if err := os.Lchown(dir, -1, gid); err != nil {
			return fail(fmt.Errorf("giving the socket directory %s to group %d, as the policy admits it: %w", dir, gid, err))
		}
	}
	// Mkdir's mode passed through the umask; Chmod makes it exact.
	if err := os.Chmod(dir, socketDirMode(mode)); err != nil {
		return fail(err)
	}
	return true, nil
}

// maxSocketDirLinks bounds the symbolic links followed while checking a
// socket's directory, as the kernel's ELOOP does (40 on Linux).
const maxSocketDirLinks = 40

// checkSocketDir checks dir, every directory on the way to it and every
// symbolic link followed to reach it, resolving the path from the root
// down as the kernel will: each directory must be owned by root or euid and,
// if group or others may write to it, be sticky; each link must be owned by
// root or euid (as /tmp is on macOS, /var/run on Debian), and what it points
// to is checked in turn. dir itself must not be a symbolic link. It reports
// whether dir exists; when it does not, its parent has passed.
func checkSocketDir(dir string, euid int) (exists bool, err error) {
	if !filepath.IsAbs(dir) {
		// The kernel's working directory, not $PWD, which may name it
		// through links.
		wd, err := unix.Getwd()
		if err != nil {
			return false, fmt.Errorf("socket directory: %w", err)
		}
		dir = wd + "/" + dir
	}
	w := dirWalk{euid: euid}
	fi, err := os.Lstat("/")
	if err != nil {
		return false, fmt.Errorf("socket directory: %w", err)
	}
	if err := w.checkDir("/", fi); err != nil {
		return false, err
	}
	_, err = w.resolve("/", dir, true)
	if errors.Is(err, errSocketDirMissing) {
		return false, nil
	}
	return err == nil, err
}

var errSocketDirMissing = errors.New("socket directory missing")

type dirWalk struct {
	euid  int
	links int
}

// resolve walks the elements of p from base, a real directory already
// checked, and returns the real directory p leads to. last says that p's
// last element is the socket's directory: it must not be a link, and if it
// is missing resolve returns errSocketDirMissing.
func (w *dirWalk) resolve(base, p string, last bool) (string, error) {
	elems := strings.Split(p, "/")
	if strings.HasPrefix(p, "/") {
		base = "/"
	}
	final := len(elems) - 1
	for final >= 0 && (elems[final] == "" || elems[final] == ".") {
		final--
	}
	for i, name := range elems {
		switch name {
		case "", ".":
			continue
		case "..":
			base = filepath.Dir(base)
			continue
		}
		path := filepath.Join(base, name)
		isDir := last && i == final
		fi, err := os.Lstat(path)
		if isDir && errors.Is(err, fs.ErrNotExist) {
			return "", errSocketDirMissing
		}
		if err != nil {
			return "", fmt.Errorf("socket directory: %w", err)
		}
		switch fi.Mode().Type() {
		case fs.ModeDir:
			if err := w.checkDir(path, fi); err != nil {
				return "", err
			}
			base = path
		case fs.ModeSymlink:
			uid, err := fileOwner(path, fi)
			if err != nil {
				return "", err
			}
			if isDir {
				return "", fmt.Errorf("%w: %s is a symbolic link (owned by uid %d), not a directory: a link could be pointed elsewhere once the server runs",
					ErrUnsafeDirectory, path, uid)
			}
			if uid != 0 && uid != w.euid {
				return "", fmt.Errorf("%w: %s is a symbolic link owned by uid %d, not by this process's uid %d or root",
					ErrUnsafeDirectory, path, uid, w.euid)
			}
			if w.links++; w.links > maxSocketDirLinks {
				return "", fmt.Errorf("socket directory %s: %w", path, syscall.ELOOP)
			}
			target, err := os.Readlink(path)
			if err != nil {
				return "", fmt.Errorf("socket directory: %w", err)
			}
			if base, err = w.resolve(base, target, false); err != nil {
				return "", err
			}
		default:
			return "", fmt.Errorf("socket directory %s: %w", path, syscall.ENOTDIR)
		}
	}
	return base, nil
}

// checkDir checks the real directory path, described by fi: owned by root
// or this process's user, and sticky if group or others may write to it.
func (w *dirWalk) checkDir(path string, fi fs.FileInfo) error {
	uid, err := fileOwner(path, fi)
	if err != nil {
		return err
	}
	if uid != 0 && uid != w.euid {
		return fmt.Errorf("%w: %s is owned by uid %d, not by this process's uid %d or root",
			ErrUnsafeDirectory, path, uid, w.euid)
	}
	if perm := fi.Mode(); perm&0o022 != 0 && perm&fs.ModeSticky == 0 {
		return fmt.Errorf("%w: %s is writable by others and not sticky (mode %04o)",
			ErrUnsafeDirectory, path, perm.Perm())
	}
	return nil
}

func fileOwner(path string, fi fs.FileInfo) (int, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("socket directory %s: no owner information", path)
	}
	return int(st.Uid), nil
}

// bindUnixPath does socket, bind, chown (to group gid, unless -1), chmod,
// listen, in that order, so that the socket accepts nobody before its owner
// and mode are right (golang/go#11822).
func bindUnixPath(ctx context.Context, path string, mode fs.FileMode, gid int) (*Listener, error) {
	if err := ClearStale(ctx, path); err != nil {
		return nil, err
	}
	syscall.ForkLock.RLock()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // net.FileListener holds its own copy
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			// Another process bound the path after it was cleared.
			return nil, &InUseError{Detail: "another server bound the path first", Cause: err}
		}
		return nil, os.NewSyscallError("bind", err)
	}
	// From here on the file is ours: remove it on any failure.
	fail := func(err error) (*Listener, error) {
		os.Remove(path)
		return nil, err
	}
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			return fail(fmt.Errorf("giving the socket to group %d, as the policy admits it: %w", gid, err))
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		return fail(os.NewSyscallError("listen", err))
	}
	l, err := net.FileListener(f)
	if err != nil {
		return fail(err)
	}
	return &Listener{Listener: l, path: path, file: fi}, nil
}

// SetAccess gives the socket file mode and group gid (unless -1), if it
// is still the file Listen bound, and the directory Listen created for it
// (if it did) the search permission that mode needs and the same group:
// for a server that learns who may connect only after Listen. The
// directories on the way were checked by Listen: no one else can replace
// the file meanwhile.
func (l *Listener) SetAccess(mode fs.FileMode, gid int) error {
	now, err := os.Lstat(l.path)
	if err != nil {
		return err
	}
	if !SameFile(l.file, now) {
		return fmt.Errorf("%s is no longer the socket this listener bound", l.path)
	}
	if l.dir != "" {
		if gid >= 0 {
			if err := os.Lchown(l.dir, -1, gid); err != nil {
				return fmt.Errorf("giving the socket directory %s to group %d: %w", l.dir, gid, err)
			}
		}
		if err := os.Chmod(l.dir, socketDirMode(mode)); err != nil {
			return err
		}
	}
	if gid >= 0 {
		if err := os.Lchown(l.path, -1, gid); err != nil {
			return fmt.Errorf("giving the socket to group %d: %w", gid, err)
		}
	}
	if err := os.Chmod(l.path, mode); err != nil {
		return err
	}
	l.file, err = os.Lstat(l.path)
	return err
}

// Access returns the socket file's mode and group now.
func (l *Listener) Access() (fs.FileMode, int, error) {
	fi, err := os.Lstat(l.path)
	if err != nil {
		return 0, -1, err
	}
	gid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		gid = int(st.Gid)
	}
	return fi.Mode().Perm(), gid, nil
}
