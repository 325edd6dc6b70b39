package listen

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
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

func init() {
	// symlink TARGET LINK: makes LINK point to TARGET, as whoever runs it.
	testutil.RegisterHelper("symlink", func(args []string) error {
		return os.Symlink(args[0], args[1])
	})
}

// symlinkAs makes link point to target from a process running as uid.
func symlinkAs(t *testing.T, uid int, target, link string) {
	t.Helper()
	cmd := testutil.HelperCommand(t, uid, uid, "symlink", target, link)
	if err := cmd.Run(); err != nil {
		t.Fatalf("symlink helper as uid %d: %v", uid, err)
	}
	if st := lstatT(t, link); int(st.Uid) != uid {
		t.Fatalf("%s is owned by uid %d, want %d", link, st.Uid, uid)
	}
}

func lstatT(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// traversableTempDir is a new short directory, owned by root, that every
// user may enter.
func traversableTempDir(t *testing.T) string {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mkdirMode makes dir with exactly mode, owned by uid (when not -1).
func mkdirMode(t *testing.T, dir string, mode fs.FileMode, uid int) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// linkState describes a symbolic link: its inode, owner and target, to show
// that it was left alone.
func linkState(t *testing.T, link string) string {
	t.Helper()
	fi, err := os.Lstat(link)
	if err != nil {
		return "missing: " + err.Error()
	}
	target, _ := os.Readlink(link)
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%v ino=%d uid=%d -> %s", fi.Mode(), st.Ino, st.Uid, target)
}

// listenFails checks that Listen on the socket path refuses with
// ErrUnsafeDirectory and an error saying each of want.
func listenFails(t *testing.T, path string, want ...string) {
	t.Helper()
	l, err := grpcipc.Listen(context.Background(), "unix://"+path)
	if err == nil {
		l.Close()
		t.Fatalf("Listen(%s) succeeded; want ErrUnsafeDirectory", path)
	}
	if !errors.Is(err, grpcipc.ErrUnsafeDirectory) {
		t.Fatalf("Listen(%s) = %v; want ErrUnsafeDirectory", path, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Listen(%s) = %v; want it to say %q", path, err, w)
		}
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused Listen left something at %s (%v)", path, err)
	}
}

// listenServes checks that Listen on the socket path works and accepts a
// connection.
func listenServes(t *testing.T, path string) {
	t.Helper()
	l, err := grpcipc.Listen(context.Background(), "unix://"+path)
	if err != nil {
		t.Fatalf("Listen(%s): %v", path, err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.Close()
}

// Another user makes the socket's directory, in a sticky directory all may
// write to, a symbolic link to a directory of the server's user, meaning to
// point it elsewhere once the server runs: Listen refuses it and leaves it.
func TestListenRefusesSymlinkedSocketDir(t *testing.T) {
	testutil.RequireRoot(t)
	base := traversableTempDir(t)
	shared := mkdirMode(t, filepath.Join(base, "shared"), 0o777|fs.ModeSticky, -1)
	mine := mkdirMode(t, filepath.Join(base, "mine"), 0o700, -1)
	link := filepath.Join(shared, "app")
	symlinkAs(t, testutil.Nobody, mine, link)
	before := linkState(t, link)

	listenFails(t, filepath.Join(link, "s.sock"), link, "symbolic link", "uid 65534")
	if after := linkState(t, link); after != before {
		t.Errorf("the link was changed: before %s, after %s", before, after)
	}
	if ents, _ := os.ReadDir(mine); len(ents) != 0 {
		t.Errorf("Listen wrote %d entries through the link", len(ents))
	}

	// A link of the server's own user is refused there too: whoever may
	// write to its directory could not repoint it, but the socket's
	// directory is meant to be a real one.
	own := filepath.Join(base, "own")
	if err := os.Symlink(mine, own); err != nil {
		t.Fatal(err)
	}
	listenFails(t, filepath.Join(own, "s.sock"), own, "symbolic link", "uid 0")
	// The path goes through the other user's link even when it climbs back
	// out of it with "..".
	listenFails(t, link+"/../x/s.sock", link, "uid 65534")
}

// Every directory above the socket's, and every link on the way, must be
// safe from other users too, as the client checks them.
func TestListenChecksDirectoriesAboveSocketDir(t *testing.T) {
	testutil.RequireRoot(t)
	base := traversableTempDir(t)
	theirs := mkdirMode(t, filepath.Join(base, "theirs"), 0o755, testutil.Nobody)
	mkdirMode(t, filepath.Join(theirs, "mine"), 0o700, -1)
	sticky := mkdirMode(t, filepath.Join(base, "sticky"), 0o777|fs.ModeSticky, -1)
	theirSticky := mkdirMode(t, filepath.Join(base, "tsticky"), 0o777|fs.ModeSticky, testutil.Nobody)
	real := mkdirMode(t, filepath.Join(base, "real"), 0o755, -1)
	mkdirMode(t, filepath.Join(real, "app"), 0o700, -1)

	t.Run("parent owned by another user", func(t *testing.T) {
		listenFails(t, filepath.Join(theirs, "mine", "s.sock"), theirs, "owned by uid 65534")
		// Nor does Listen create a directory there.
		listenFails(t, filepath.Join(theirs, "new", "s.sock"), theirs, "owned by uid 65534")
		if _, err := os.Lstat(filepath.Join(theirs, "new")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Listen created a directory in %s (%v)", theirs, err)
		}
	})
	t.Run("sticky parent owned by another user", func(t *testing.T) {
		mkdirMode(t, filepath.Join(theirSticky, "mine"), 0o700, -1)
		listenFails(t, filepath.Join(theirSticky, "mine", "s.sock"), theirSticky, "owned by uid 65534")
	})
	t.Run("link above owned by another user", func(t *testing.T) {
		link := filepath.Join(sticky, "run")
		symlinkAs(t, testutil.Nobody, real, link)
		before := linkState(t, link)
		listenFails(t, filepath.Join(link, "app", "s.sock"), link, "symbolic link owned by uid 65534")
		if after := linkState(t, link); after != before {
			t.Errorf("the link was changed: before %s, after %s", before, after)
		}
	})
	t.Run("link above owned by root", func(t *testing.T) {
		// As /var/run -> /run on Debian, /tmp -> private/tmp on macOS.
		link := filepath.Join(base, "varrun")
		if err := os.Symlink("real", link); err != nil {
			t.Fatal(err)
		}
		listenServes(t, filepath.Join(link, "app", "s.sock"))
		// Listen may create the socket's directory behind such a link.
		listenServes(t, filepath.Join(link, "new", "s.sock"))
		if _, err := os.Lstat(filepath.Join(real, "new")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the directory Listen made is still there after Close (%v)", err)
		}
	})
	t.Run("link above pointing into another user's directory", func(t *testing.T) {
		link := filepath.Join(base, "totheirs")
		if err := os.Symlink(theirs, link); err != nil {
			t.Fatal(err)
		}
		listenFails(t, filepath.Join(link, "mine", "s.sock"), theirs, "owned by uid 65534")
	})
	t.Run("sticky parents", func(t *testing.T) {
		// As /tmp: the directory Listen makes in it, or one of its own.
		listenServes(t, filepath.Join(sticky, "new", "s.sock"))
		mkdirMode(t, filepath.Join(sticky, "mine"), 0o700, -1)
		listenServes(t, filepath.Join(sticky, "mine", "s.sock"))
	})
	t.Run("parent writable by a group, not sticky", func(t *testing.T) {
		gw := mkdirMode(t, filepath.Join(base, "gw"), 0o775, -1)
		mkdirMode(t, filepath.Join(gw, "mine"), 0o700, -1)
		listenFails(t, filepath.Join(gw, "mine", "s.sock"), gw, "writable by others")
	})
}

// A policy that admits a group makes the socket 0660 with that group; the
// directory Listen creates must let that group in (0710), and no one else.
func TestListenSocketDirAdmitsPolicyGroup(t *testing.T) {
	testutil.RequireRoot(t)
	const usersGroup = 100 // "users" on Debian
	member := e2e.Caller{UID: 12345, GID: 12345, Groups: []int{usersGroup}}
	everyone, err := grpcipc.AllowPolicy(grpcipc.Anyone())
	if err != nil {
		t.Fatal(err)
	}
	group, err := grpcipc.AllowPolicy(grpcipc.GID(usersGroup))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		policy   *grpcipc.Policy
		dirMode  fs.FileMode
		dirGID   int
		admitted []e2e.Caller
		refused  []e2e.Caller
	}{
		{"same-user", grpcipc.SameUserPolicy(), 0o700, 0, []e2e.Caller{e2e.Root}, []e2e.Caller{member, e2e.Nobody}},
		{"group", group, 0o710, usersGroup, []e2e.Caller{e2e.Root, member}, []e2e.Caller{e2e.Nobody}},
		{"everyone", everyone, 0o711, 0, []e2e.Caller{e2e.Root, member, e2e.Nobody}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := traversableTempDir(t)
			dir := filepath.Join(base, "app") // Listen creates it
			endpoint := "unix://" + filepath.Join(dir, "s.sock")
			gs := e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(tt.policy))

			fi, err := os.Lstat(dir)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode()&^fs.ModeDir != tt.dirMode || int(st.Gid) != tt.dirGID {
				t.Errorf("directory Listen made: mode %v group %d; want %04o group %d", fi.Mode(), st.Gid, tt.dirMode, tt.dirGID)
			}
			for _, c := range tt.admitted {
				if res := e2e.Call(t, c, endpoint, "SayHello"); res.Code != "OK" {
					t.Errorf("%v: got %s %q; want OK", c, res.Code, res.Message)
				}
			}
			served := gs.Srv.Calls.Load()
			for _, c := range tt.refused {
				// Refused by the file system: the call never reaches the
				// server, and the client says why at once.
				res := e2e.Call(t, c, endpoint, "SayHello")
				if res.Code != "PermissionDenied" || !strings.Contains(res.Message, "refuses this process's user") {
					t.Errorf("%v: got %s %q; want PermissionDenied, the socket refuses this user", c, res.Code, res.Message)
				}
			}
			if got := gs.Srv.Calls.Load(); got != served {
				t.Errorf("a refused caller was served (%d calls, %d before)", got, served)
			}
			if log := gs.Log.String(); strings.Contains(log, "connection refused") {
				t.Errorf("the server saw a caller the file system should have kept out:\n%s", log)
			}
		})
	}
}
