package grpcipc

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/windows"
)

func currentFacts() (osFacts, error) {
	tok := windows.GetCurrentProcessToken()
	u, err := tok.GetTokenUser()
	if err != nil {
		return osFacts{}, fmt.Errorf("reading the process token's user: %w", err)
	}
	return osFacts{goos: runtime.GOOS, euid: -1, sid: u.User.Sid.String()}, nil
}

func selfIdentity() (identity, error) {
	f, err := currentFacts()
	if err != nil {
		return identity{}, err
	}
	return identity{sid: f.sid}, nil
}
