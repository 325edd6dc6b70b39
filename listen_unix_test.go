//go:build unix

package grpcipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/sockfile"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

func init() {
	// connect PATH: one connection attempt; prints "ok" or the error.
	testutil.RegisterHelper("connect", func(args []string) error {
		c, err := net.Dial("unix", args[0])
		if err != nil {
			fmt.Println(errors.Unwrap(errors.Unwrap(err)))
			return nil
		}
		c.Close()
		fmt.Println("ok")
		return nil
	})
	// connect-loop PATH DURATION: connects again and again for DURATION and
	// prints how many connections were accepted.
	testutil.RegisterHelper("connect-loop", func(args []string) error {
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return err
		}
		fmt.Println("started")
		n := 0
		for end := time.Now().Add(d); time.Now().Before(end); {
			if c, err := net.Dial("unix", args[0]); err == nil {
				n++
				c.Close()
			}
		}
		fmt.Println(n)
		return nil
	})
	// listen ENDPOINT: listens with grpcipc.Listen, prints "ready", accepts
	// and closes connections until killed.
	testutil.RegisterHelper("listen", func(args []string) error {
		l, err := Listen(context.Background(), args[0])
		if err != nil {
			return err
		}
		fmt.Println("ready")
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			c.Close()
		}
	})
}

// sockPath returns a socket path in a fresh short directory.
func sockPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(testutil.ShortTempDir(t), "s.sock")
}

func mustListen(t *testing.T, endpoint string, opts ...ListenOption) net.Listener {
	t.Helper()
	l, err := Listen(context.Background(), endpoint, opts...)
	if err != nil {
		t.Fatalf("Listen(%s): %v", endpoint, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// acceptLoop accepts and closes connections until l is closed.
func acceptLoop(t *testing.T, l net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
}

func dialOK(t *testing.T, path string) {
	t.Helper()
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.Close()
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd to count open files: %v", err)
	}
	return len(ents)
}

func TestListenCreatesSocket0600AndRemovesItOnClose(t *testing.T) {
	path := sockPath(t)
	l, err := Listen(context.Background(), "unix://"+path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket file mode = %v, want a socket with 0600", fi.Mode())
	}
	if got := l.Addr().String(); got != path {
		t.Errorf("Addr() = %q, want %q", got, path)
	}
	acceptLoop(t, l)
	dialOK(t, path)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestListenSocketMode(t *testing.T) {
	path := sockPath(t)
	mustListen(t, "unix://"+path, WithSocketMode(0o660))
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("mode = %v, want 0660", fi.Mode().Perm())
	}
	for _, tc := range []struct {
		endpoint string
		mode     fs.FileMode
		why      string
	}{
		{"unix-abstract:" + testutil.AbstractName(t), 0o600, "applies only to unix socket paths"},
		{"tcp://127.0.0.1:0", 0o600, "applies only to unix socket paths"},
		{"unix://" + sockPath(t), fs.ModeSetuid | 0o600, "bits other than permissions"},
	} {
		l, err := Listen(context.Background(), tc.endpoint, WithSocketMode(tc.mode))
		if err == nil {
			l.Close()
			t.Errorf("Listen(%s, WithSocketMode(%v)) succeeded; want an error", tc.endpoint, tc.mode)
		} else if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Listen(%s, WithSocketMode(%v)) = %v; want it to say %q", tc.endpoint, tc.mode, err, tc.why)
		}
	}
}

func TestListenKeepsLiveSocket(t *testing.T) {
	path := sockPath(t)
	// The live server is another process.
	srv := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "listen", "unix://"+path)
	if line, _ := testutil.Start(t, srv).ReadString('\n'); line != "ready\n" {
		t.Fatalf("helper said %q, want ready", line)
	}
	before, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)

	l, err := Listen(context.Background(), "unix://"+path)
	if err == nil {
		l.Close()
		t.Fatal("second Listen on a live socket succeeded")
	}
	if !errors.Is(err, ErrAddressInUse) || !strings.Contains(err.Error(), path) {
		t.Errorf("error = %v; want ErrAddressInUse naming %s", err, path)
	}
	if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) {
		t.Fatalf("the live server's socket was replaced or removed (%v)", err)
	}
	dialOK(t, path) // the first server still serves
	if got := openFDs(t); got != fds {
		t.Errorf("open files: %d before the refused Listen, %d after", fds, got)
	}

	// Once the server is killed, its socket is stale: Listen replaces it.
	srv.Process.Kill()
	srv.Wait()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("a killed server's socket should remain, stale: %v", err)
	}
	l = mustListen(t, "unix://"+path)
	acceptLoop(t, l)
	dialOK(t, path)
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := sockPath(t)
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	// Mark the stale socket by its mode.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	l := mustListen(t, "unix://"+path)
	now, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if now.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600 (0644 is the stale socket's)", now.Mode().Perm())
	}
	acceptLoop(t, l)
	dialOK(t, path)
}

func TestListenRefusesNonSocket(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
		kind string
	}{
		{"regular file", func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "regular file"},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p, "inside"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "directory"},
		{"symlink to a file", func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "target")
			if err := os.WriteFile(target, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"dangling symlink", func(t *testing.T, p string) {
			if err := os.Symlink("/nonexistent/grpcipc", p); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"symlink to a stale socket", func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "real.sock")
			old, err := net.ListenUnix("unix", &net.UnixAddr{Name: target, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			old.SetUnlinkOnClose(false)
			old.Close()
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"fifo", func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "FIFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sockPath(t)
			tt.make(t, path)
			before := snapshot(t, path)
			fds := openFDs(t)
			l, err := Listen(context.Background(), "unix://"+path)
			if err == nil {
				l.Close()
				t.Fatalf("Listen over a %s succeeded", tt.name)
			}
			if !errors.Is(err, ErrNotSocket) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.kind) {
				t.Errorf("error = %v; want ErrNotSocket naming %s and %q", err, path, tt.kind)
			}
			if after := snapshot(t, path); after != before {
				t.Errorf("the %s was changed: before %s, after %s", tt.name, before, after)
			}
			if got := openFDs(t); got != fds {
				t.Errorf("open files: %d before, %d after", fds, got)
			}
		})
	}
}

// snapshot describes what stands at path: type, inode, and content or link
// target, to show that it was left alone.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		return "missing: " + err.Error()
	}
	st := fi.Sys().(*syscall.Stat_t)
	s := fmt.Sprintf("%v ino=%d", fi.Mode(), st.Ino)
	switch fi.Mode().Type() {
	case 0:
		b, _ := os.ReadFile(path)
		s += " content=" + string(b)
	case fs.ModeSymlink:
		target, _ := os.Readlink(path)
		s += " -> " + target
	case fs.ModeDir:
		ents, _ := os.ReadDir(path)
		s += " entries=" + strconv.Itoa(len(ents))
	}
	return s
}

func TestListenCloseLeavesAnotherServersSocket(t *testing.T) {
	path := sockPath(t)
	first := mustListen(t, "unix://"+path)
	// Someone removes the first socket and another server takes the path.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	second := mustListen(t, "unix://"+path)
	acceptLoop(t, second)
	first.Close()
	dialOK(t, path)
}

func TestListenMakesAndRemovesItsDirectory(t *testing.T) {
	dir := filepath.Join(testutil.ShortTempDir(t), "app")
	path := filepath.Join(dir, "app.sock")
	l, err := Listen(context.Background(), "unix://"+path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, want 0700", fi.Mode().Perm())
	}
	l.Close()
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory Listen made is still there after Close: %v", err)
	}
	// A directory Listen did not make is left.
	existing := testutil.ShortTempDir(t)
	l = mustListen(t, "unix://"+filepath.Join(existing, "s.sock"))
	l.Close()
	if _, err := os.Stat(existing); err != nil {
		t.Errorf("Close removed a directory Listen did not make: %v", err)
	}
}

func TestListenRefusesUnsafeDirectory(t *testing.T) {
	base := testutil.ShortTempDir(t)
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(context.Background(), "unix://"+filepath.Join(open, "s.sock"))
	if err == nil {
		l.Close()
		t.Fatal("Listen in a world-writable, non-sticky directory succeeded")
	}
	if !errors.Is(err, ErrUnsafeDirectory) || !strings.Contains(err.Error(), open) || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("error = %v; want ErrUnsafeDirectory naming %s", err, open)
	}

	sticky := filepath.Join(base, "sticky")
	if err := os.Mkdir(sticky, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	l = mustListen(t, "unix://"+filepath.Join(sticky, "s.sock"))
	l.Close()

	t.Run("owned by another user", func(t *testing.T) {
		testutil.RequireRoot(t)
		theirs := filepath.Join(base, "theirs")
		if err := os.Mkdir(theirs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(theirs, testutil.Nobody, testutil.Nobody); err != nil {
			t.Fatal(err)
		}
		l, err := Listen(context.Background(), "unix://"+filepath.Join(theirs, "s.sock"))
		if err == nil {
			l.Close()
			t.Fatal("Listen in a directory another user owns succeeded")
		}
		if !errors.Is(err, ErrUnsafeDirectory) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("error = %v; want ErrUnsafeDirectory naming the owner", err)
		}
	})
}

func TestListenEndpointErrors(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	long := filepath.Join(dir, strings.Repeat("x", 120))
	for _, tc := range []struct{ endpoint, why string }{
		{"unix://" + long, "allows at most"},
		{"bogus://x", `unknown scheme "bogus"`},
		{"npipe:app", "named pipes exist only on Windows"},
	} {
		l, err := Listen(context.Background(), tc.endpoint)
		if err == nil {
			l.Close()
			t.Errorf("Listen(%s) succeeded", tc.endpoint)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), tc.endpoint) {
			t.Errorf("Listen(%s) = %v; want it to name the endpoint and say %q", tc.endpoint, err, tc.why)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a refused Listen left %d files in %s", len(ents), dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if l, err := Listen(ctx, "unix://"+filepath.Join(dir, "s.sock")); !errors.Is(err, context.Canceled) {
		if l != nil {
			l.Close()
		}
		t.Errorf("Listen with a cancelled context = %v, want context.Canceled", err)
	}
}

// helperOutput runs a helper to completion and returns its stdout.
func helperOutput(t *testing.T, uid int, name string, args ...string) string {
	t.Helper()
	cmd := testutil.HelperCommand(t, uid, uid, name, args...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s %v: %v", name, args, err)
	}
	return strings.TrimSpace(string(out))
}

// A traversable directory owned by root, so that only the socket's own mode
// decides whether another user may connect.
func sharedSocketDir(t *testing.T) string {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestListenOtherUserRefusedBySocketMode(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(sharedSocketDir(t), "s.sock")
	l := mustListen(t, "unix://"+path)
	acceptLoop(t, l)
	if got := helperOutput(t, testutil.Nobody, "connect", path); got != "permission denied" {
		t.Errorf("uid 65534 connecting to a 0600 socket: %q, want permission denied", got)
	}
	// The control: with the socket opened to everyone, the same helper
	// connects, so the refusal above came from the mode.
	path2 := filepath.Join(filepath.Dir(path), "open.sock")
	l2 := mustListen(t, "unix://"+path2, WithSocketMode(0o666))
	acceptLoop(t, l2)
	if got := helperOutput(t, testutil.Nobody, "connect", path2); got != "ok" {
		t.Errorf("uid 65534 connecting to a 0666 socket: %q, want ok", got)
	}
}

// TestListenNoWindowBeforeChmod has another user connect as fast as it can
// while sockets are created again and again at one path: with socket, bind,
// chmod, listen, none of its connections may ever be accepted.
func TestListenNoWindowBeforeChmod(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		mode     fs.FileMode
		admitted bool
	}{{0o600, false}, {0o666, true}} {
		t.Run(fmt.Sprintf("%04o", tc.mode), func(t *testing.T) {
			path := filepath.Join(sharedSocketDir(t), "s.sock")
			cmd := testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "connect-loop", path, "1500ms")
			r := testutil.Start(t, cmd)
			if line, _ := r.ReadString('\n'); line != "started\n" {
				t.Fatalf("helper said %q", line)
			}
			cycles := 0
			for done := time.Now().Add(time.Second); time.Now().Before(done); cycles++ {
				l, err := Listen(context.Background(), "unix://"+path, WithSocketMode(tc.mode))
				if err != nil {
					t.Fatal(err)
				}
				// Accept what the other user may have got in.
				inner := l.(*listener).Listener.(*sockfile.Listener).Listener.(*net.UnixListener)
				inner.SetDeadline(time.Now().Add(time.Millisecond))
				if c, err := inner.Accept(); err == nil {
					c.Close()
				}
				l.Close()
			}
			rest, _ := io.ReadAll(r)
			cmd.Wait()
			n, err := strconv.Atoi(strings.TrimSpace(string(rest)))
			if err != nil {
				t.Fatalf("helper output %q: %v", rest, err)
			}
			t.Logf("%d listen cycles; uid 65534 got %d connections in", cycles, n)
			if tc.admitted && n == 0 {
				t.Errorf("uid 65534 never connected to a %04o socket: the test cannot see a window", tc.mode)
			}
			if !tc.admitted && n != 0 {
				t.Errorf("uid 65534 connected %d times to a socket created %04o", n, tc.mode)
			}
		})
	}
}
