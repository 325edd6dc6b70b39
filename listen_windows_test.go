package grpcipc

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"golang.org/x/sys/windows"
)

// afUnix reports whether this Windows has AF_UNIX sockets.
func afUnix(t *testing.T) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(testutil.ShortTempDir(t), "probe.sock"))
	if err != nil {
		t.Skipf("no AF_UNIX here (Wine 8 has none: WSAEAFNOSUPPORT); runs on Windows 10 and later: %v", err)
	}
	l.Close()
}

func TestUnixSocketWindows(t *testing.T) {
	afUnix(t)
	dir := filepath.Join(testutil.ShortTempDir(t), "app")
	path := filepath.Join(dir, "app.sock")
	endpoint := "unix:" + path
	l, err := Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if sd, err := windows.GetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION); err != nil || strings.Contains(sd.String(), ";WD)") {
		t.Errorf("socket directory DACL %v, %v; want this user's", sd, err)
	}
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil || !strings.Contains(sd.String(), "D:P") || strings.Contains(sd.String(), ";WD)") {
		t.Errorf("socket file DACL %v, %v; want protected, not Everyone", sd, err)
	}
	sendOnce(t, l, endpoint)
	if l2, err := Listen(context.Background(), endpoint); !errors.Is(err, ErrAddressInUse) {
		if l2 != nil {
			l2.Close()
		}
		t.Errorf("second Listen = %v, want ErrAddressInUse", err)
	}
	l.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the socket's directory: %v", err)
	}
}
