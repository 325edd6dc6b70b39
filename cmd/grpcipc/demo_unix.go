//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grpcipc/grpcipc"
)

// demoEndpoint is a socket in a new private directory (mode 0700), and the
// clean-up that removes both.
func demoEndpoint() (ep grpcipc.Endpoint, what string, cleanup func() error, err error) {
	dir, err := os.MkdirTemp("", "grpcipc-demo-")
	if err != nil {
		return ep, "", nil, err
	}
	sock := filepath.Join(dir, "demo.sock")
	cleanup = func() error {
		os.Remove(sock) // the server removes it; this is for a server that could not
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", dir, err)
		}
		return nil
	}
	ep, err = grpcipc.ParseEndpoint("unix://" + sock)
	if err != nil {
		cleanup()
		return ep, "", nil, err
	}
	return ep, "socket and " + dir + " removed", cleanup, nil
}
