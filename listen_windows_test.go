package grpcipc

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"golang.org/x/sys/windows"
)

func TestSocketDirWindows(t *testing.T) {
	me, err := selfIdentity()
	if err != nil {
		t.Fatal(err)
	}
	base := testutil.ShortTempDir(t)
	dir := filepath.Join(base, "private")
	created, err := prepareSocketDirWindows(dir, me.sid)
	if err != nil || !created {
		t.Fatalf("prepareSocketDirWindows(new) = %v, %v", created, err)
	}
	if others, err := dirOthers(dir, me.sid); err != nil || len(others) != 0 {
		t.Errorf("the new directory admits %v (%v); want only this user and SYSTEM", others, err)
	}
	if created, err := prepareSocketDirWindows(dir, me.sid); err != nil || created {
		t.Errorf("prepareSocketDirWindows(existing private) = %v, %v", created, err)
	}
	// A directory that lets everyone in is refused.
	open := filepath.Join(base, "open")
	sd, err := windows.SecurityDescriptorFromString("D:P(A;OICI;FA;;;WD)(A;OICI;FA;;;" + me.sid + ")")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := windows.UTF16PtrFromString(open)
	if err := windows.CreateDirectory(p, &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}); err != nil {
		t.Fatal(err)
	}
	_, err = prepareSocketDirWindows(open, me.sid)
	if !errors.Is(err, ErrUnsafeDirectory) || !strings.Contains(err.Error(), "S-1-1-0") {
		t.Errorf("prepareSocketDirWindows(open to Everyone) = %v; want ErrUnsafeDirectory naming S-1-1-0", err)
	}
}

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
	me, _ := selfIdentity()
	if others, err := dirOthers(dir, me.sid); err != nil || len(others) != 0 {
		t.Errorf("socket directory admits %v, %v", others, err)
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
