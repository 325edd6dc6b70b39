//go:build unix

package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listenBacklog is the accept queue asked for; the kernel caps it at
// net.core.somaxconn (Linux) or kern.ipc.somaxconn (macOS, BSD).
const listenBacklog = 4096

// probeTimeout bounds the dial that tells a live socket from a stale one.
const probeTimeout = 2 * time.Second

func listenUnixPath(ctx context.Context, ep Endpoint, cfg listenConfig) (net.Listener, error) {
	path := ep.Address
	l, err := listenUnixPath1(ctx, path, cfg.mode, cfg.gid)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: err}
	}
	return l, nil
}

func listenUnixPath1(ctx context.Context, path string, mode fs.FileMode, gid int) (net.Listener, error) {
	dir := filepath.Dir(path)
	createdDir, err := prepareSocketDir(dir)
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

// prepareSocketDir makes sure dir exists and that no other user can swap
// the socket in it. It reports whether it created dir.
func prepareSocketDir(dir string) (created bool, err error) {
	if err := os.Mkdir(dir, 0o700); err == nil {
		// Mkdir's mode passed through the umask; make it exactly 0700.
		if err := os.Chmod(dir, 0o700); err != nil {
			os.Remove(dir)
			return false, err
		}
		return true, nil
	} else if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("socket directory: %w", err)
	}
	fi, err := os.Stat(dir) // follows a link, as /tmp is one on macOS
	if err != nil {
		return false, fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("socket directory %s: %w", dir, syscall.ENOTDIR)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, fmt.Errorf("socket directory %s: no owner information", dir)
	}
	if euid := os.Geteuid(); int(st.Uid) != euid && st.Uid != 0 {
		return false, fmt.Errorf("%w: %s is owned by uid %d, not by this process's uid %d or root",
			ErrUnsafeDirectory, dir, st.Uid, euid)
	}
	if perm := fi.Mode(); perm&0o022 != 0 && perm&fs.ModeSticky == 0 {
		return false, fmt.Errorf("%w: %s is writable by others and not sticky (mode %04o)",
			ErrUnsafeDirectory, dir, perm.Perm())
	}
	return false, nil
}

// bindUnixPath does socket, bind, chown (to group gid, unless -1), chmod,
// listen, in that order, so that the socket accepts nobody before its owner
// and mode are right (golang/go#11822).
func bindUnixPath(ctx context.Context, path string, mode fs.FileMode, gid int) (*unixListener, error) {
	if err := clearSocketPath(ctx, path); err != nil {
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
			return nil, &inUseError{"another server bound the path first", err}
		}
		return nil, os.NewSyscallError("bind", err)
	}
	// From here on the file is ours: remove it on any failure.
	fail := func(err error) (*unixListener, error) {
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
	return &unixListener{Listener: l, path: path, file: fi}, nil
}

// clearSocketPath removes a stale socket at path and refuses anything else
// standing there.
func clearSocketPath(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w (it is a %s); refusing to replace it", ErrNotSocket, fileKind(fi.Mode()))
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(pctx, "unix", path)
	switch {
	case err == nil:
		c.Close()
		return &inUseError{detail: "a server is accepting connections there; its socket is left alone"}
	case errors.Is(err, unix.ECONNREFUSED):
		// Stale: nobody accepts on it. Remove it only if it is still the
		// file that was probed.
		if now, err := os.Lstat(path); err == nil && sameFile(fi, now) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing stale socket: %w", err)
			}
		}
		return nil
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, context.DeadlineExceeded):
		return &inUseError{detail: fmt.Sprintf("a server holds the socket but did not accept within %v; left alone", probeTimeout)}
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return fmt.Errorf("cannot tell whether the existing socket is live, so it is left alone: %w", err)
	}
}

// sameFile reports whether a and b describe the same file, not merely one
// that reuses the inode number of a removed one (tmpfs does at once).
func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime())
}

func fileKind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "regular file"
	case fs.ModeDir:
		return "directory"
	case fs.ModeSymlink:
		return "symbolic link"
	case fs.ModeNamedPipe:
		return "FIFO"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "device"
	}
	return "non-socket file"
}

// unixListener removes its socket file, and the directory Listen created for
// it, when closed.
type unixListener struct {
	net.Listener
	path string
	file fs.FileInfo // the socket file as bound, to recognise it at Close
	dir  string      // the directory Listen created, or ""

	once     sync.Once
	closeErr error
}

func (l *unixListener) Close() error {
	l.once.Do(func() {
		l.closeErr = l.Listener.Close()
		// Remove the file only if it is still ours: another server may have
		// replaced a socket it found stale.
		if now, err := os.Lstat(l.path); err == nil && sameFile(l.file, now) {
			if err := os.Remove(l.path); err != nil && l.closeErr == nil {
				l.closeErr = err
			}
		}
		if l.dir != "" {
			os.Remove(l.dir) // fails, as it should, if something else is in it
		}
	})
	return l.closeErr
}

func listenAbstract(ctx context.Context, ep Endpoint) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "unix", "@"+ep.Address)
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, fmt.Errorf("listen %s: %w", ep, &inUseError{"a server is bound to that name", err})
	}
	return l, err
}

func listenPipe(_ context.Context, ep Endpoint, _ listenConfig) (net.Listener, error) {
	return nil, unsupportedErr(ep.String(), "named pipes exist only on Windows")
}
