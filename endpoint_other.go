//go:build !windows

package grpcipc

import (
	"os"
	"runtime"
)

func currentFacts() (osFacts, error) {
	return osFacts{
		goos:       runtime.GOOS,
		runtimeDir: os.Getenv("XDG_RUNTIME_DIR"),
		euid:       os.Geteuid(),
		tempDir:    os.TempDir(),
	}, nil
}

func selfIdentity() (identity, error) {
	return identity{uid: os.Geteuid(), hasUID: true}, nil
}
