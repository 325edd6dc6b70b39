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
	"syscall"

	"golang.org/x/sys/unix"
)

// listenBacklog is the accept queue asked for; the kernel caps it at
// net.core.somaxconn (Linux) or kern.ipc.somaxconn (macOS, BSD).
const listenBacklog = 4096

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
