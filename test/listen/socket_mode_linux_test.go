package listen

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

func statGID(t *testing.T, fi os.FileInfo) uint32 {
	t.Helper()
	return fi.Sys().(*syscall.Stat_t).Gid
}

func TestSocketPermissionsFollowPolicy(t *testing.T) {
	mk := func(principals ...grpcipc.Principal) *grpcipc.Policy {
		p, err := grpcipc.AllowPolicy(principals...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	usersGID := 100
	tests := []struct {
		name   string
		policy *grpcipc.Policy
		mode   os.FileMode
		gid    int // -1: the process's own
	}{
		{"default", nil, 0o600, -1},
		{"same user only", mk(), 0o600, -1},
		{"own uid", mk(grpcipc.UID(os.Geteuid())), 0o600, -1},
		{"one group", mk(grpcipc.GID(usersGID)), 0o660, usersGID},
		{"another uid", mk(grpcipc.UID(65534)), 0o666, -1},
		{"everyone", mk(grpcipc.Anyone()), 0o666, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.gid >= 0 && os.Geteuid() != 0 {
				t.Skip("giving a socket to a group this user is not in needs root")
			}
			path := filepath.Join(testutil.ShortTempDir(t), "s.sock")
			var opts []grpcipc.ListenOption
			if tt.policy != nil {
				opts = append(opts, grpcipc.WithPolicy(tt.policy))
			}
			l, err := grpcipc.Listen(context.Background(), "unix://"+path, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.mode {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tt.mode)
			}
			gid := int(statGID(t, fi))
			want := tt.gid
			if want < 0 {
				want = os.Getegid()
			}
			if gid != want {
				t.Errorf("socket group %d, want %d", gid, want)
			}
		})
	}
}
