// Package sockfile makes, checks and removes Unix socket files and their
// directories: a socket that accepts no one before its owner and mode are
// right, a directory no other user can swap it in, a stale socket told from
// a live one, and a listener that removes only its own file when closed.
package sockfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"
)

// probeTimeout bounds the dial that tells a live socket from a stale one.
const probeTimeout = 2 * time.Second

// ClearStale removes a stale socket at path and refuses anything else
// standing there.
func ClearStale(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w (it is a %s); refusing to replace it", ErrNotSocket, FileKind(fi.Mode()))
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(pctx, "unix", path)
	switch {
	case err == nil:
		c.Close()
		return &InUseError{Detail: "a server is accepting connections there; its socket is left alone"}
	case IsConnRefused(err):
		// Stale: nobody accepts on it. Remove it only if it is still the
		// file that was probed.
		if now, err := os.Lstat(path); err == nil && SameFile(fi, now) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing stale socket: %w", err)
			}
		}
		return nil
	case IsBusy(err) || errors.Is(err, context.DeadlineExceeded):
		return &InUseError{Detail: fmt.Sprintf("a server holds the socket but did not accept within %v; left alone", probeTimeout)}
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return fmt.Errorf("cannot tell whether the existing socket is live, so it is left alone: %w", err)
	}
}

// SameFile reports whether a and b describe the same file, not merely one
// that reuses the inode number of a removed one (tmpfs does at once).
func SameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime())
}

// FileKind names what kind of file m describes.
func FileKind(m fs.FileMode) string {
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

// Listener removes its socket file, and the directory Listen created for
// it, when closed.
type Listener struct {
	net.Listener
	path string
	file fs.FileInfo // the socket file as bound, to recognise it at Close
	dir  string      // the directory Listen created, or ""

	once     sync.Once
	closeErr error
}

// Close closes the listener and removes its socket file, if it is still
// the one it bound, and the directory Listen made for it, if empty.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.closeErr = l.Listener.Close()
		// Remove the file only if it is still ours: another server may have
		// replaced a socket it found stale.
		if now, err := os.Lstat(l.path); err == nil && SameFile(l.file, now) {
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
