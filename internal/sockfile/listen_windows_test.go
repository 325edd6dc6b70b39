package sockfile

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"golang.org/x/sys/windows"
)

func TestSocketDirWindows(t *testing.T) {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	me := struct{ sid string }{u.User.Sid.String()}
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
