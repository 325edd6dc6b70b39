package grpcipc

import (
	"fmt"
	"path/filepath"

	"github.com/grpcipc/grpcipc/internal/peercred"
	"golang.org/x/sys/windows"
)

// checkSocketPath checks, before connecting, that an AF_UNIX socket file on
// Windows is owned by an expected user. (The directories above it are not
// checked on Windows.)
func checkSocketPath(ep Endpoint, expect []Principal, self identity) error {
	path := filepath.FromSlash(ep.Address)
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("server check: %s: %w", path, err)
	}
	owner, _, err := sd.Owner()
	if err != nil || owner == nil {
		return &ServerIdentityError{Endpoint: ep.String(), Expected: principalTexts(expect), Actual: "the socket file's owner is unknown"}
	}
	c := &Creds{info: peercred.Info{SID: owner.String()}}
	for _, p := range expect {
		if p.matches(c, self) {
			return nil
		}
	}
	return &ServerIdentityError{Endpoint: ep.String(), Expected: principalTexts(expect),
		Actual: fmt.Sprintf("the socket file %s is owned by %s", path, owner)}
}
