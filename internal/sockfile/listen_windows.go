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
	"unsafe"

	"golang.org/x/sys/windows"
)

// ListenACL serves an AF_UNIX socket on Windows 10 and later. Go's net
// package binds and listens in one step, so the socket file's first ACL is
// the one it inherits from its directory: a missing directory is therefore
// created with a protected DACL for the user sid alone (and SYSTEM),
// inherited by what is made in it, and an existing directory whose DACL
// admits anyone else is refused. After listening, the file gets its own
// protected DACL, fileSDDL, which can only widen access.
func ListenACL(ctx context.Context, path, sid, fileSDDL string) (*Listener, error) {
	dir := filepath.Dir(path)
	created, err := prepareSocketDirWindows(dir, sid)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Listener, error) {
		if created {
			os.Remove(dir)
		}
		return nil, err
	}
	if err := ClearStale(ctx, path); err != nil {
		return fail(err)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fail(err)
	}
	ul.SetUnlinkOnClose(false) // Listener removes it, if still ours
	err = setFileDACL(path, fileSDDL)
	fi, statErr := os.Lstat(path)
	if err == nil {
		err = statErr
	}
	if err != nil {
		ul.Close()
		os.Remove(path)
		return fail(err)
	}
	l := &Listener{Listener: ul, path: path, file: fi}
	if created {
		l.dir = dir
	}
	return l, nil
}

// privateDirSDDL: a protected DACL, full control for this user and
// SYSTEM, inherited by files (OI) and folders (CI) made inside.
func privateDirSDDL(sid string) string {
	return "D:P(A;OICI;FA;;;" + sid + ")(A;OICI;FA;;;SY)"
}

// prepareSocketDirWindows creates dir with a private DACL, in one step, or
// checks that an existing one admits no one but this user, SYSTEM and
// Administrators. It reports whether it created dir.
func prepareSocketDirWindows(dir, sid string) (bool, error) {
	sd, err := windows.SecurityDescriptorFromString(privateDirSDDL(sid))
	if err != nil {
		return false, fmt.Errorf("socket directory: %w", err)
	}
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return false, fmt.Errorf("socket directory: %w", err)
	}
	sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
	if err := windows.CreateDirectory(p, sa); err == nil {
		return true, nil
	} else if !errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
		return false, &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	others, err := dirOthers(dir, sid)
	if err != nil {
		return false, err
	}
	if len(others) > 0 {
		return false, fmt.Errorf("%w: the ACL of %s admits %s, who would get the socket file's inherited access",
			ErrUnsafeDirectory, dir, strings.Join(others, ", "))
	}
	return false, nil
}

// dirOthers lists the SIDs other than sid, SYSTEM and Administrators that
// dir's DACL grants anything to.
func dirOthers(dir, sid string) ([]string, error) {
	sd, err := windows.GetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return nil, fmt.Errorf("socket directory %s: reading its ACL: %w", dir, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		return []string{"everyone (no DACL)"}, nil
	}
	var others []string
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return nil, fmt.Errorf("socket directory %s: %w", dir, err)
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE {
			continue
		}
		s := (*windows.SID)(unsafe.Pointer(&ace.SidStart)).String()
		switch s {
		case sid, "S-1-5-18", "S-1-5-32-544", "S-1-3-0": // this user, SYSTEM, Administrators, CREATOR OWNER
		default:
			others = append(others, s)
		}
	}
	return others, nil
}

func setFileDACL(path, sddl string) error {
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		return fmt.Errorf("setting the socket file's ACL: %w", err)
	}
	return nil
}
