//go:build !linux && !darwin && !freebsd && !windows

package grpcipc

import (
	"errors"
	"fmt"
	"net"
)

// readPeerCreds: the other BSDs', Solaris's and AIX's peer credentials are
// not read.
func readPeerCreds(conn net.Conn, _ bool) (*Creds, error) {
	return nil, fmt.Errorf("peer credentials of %s: %w", conn.RemoteAddr(), errors.ErrUnsupported)
}
