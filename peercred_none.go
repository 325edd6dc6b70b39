//go:build !linux && !darwin && !freebsd

package grpcipc

import (
	"errors"
	"fmt"
	"net"
)

// readPeerCreds: this OS's peer credentials are not read (yet): Windows gets
// them from the named-pipe transport; the other BSDs, Solaris and AIX are
// not supported.
func readPeerCreds(conn net.Conn) (*Creds, error) {
	return nil, fmt.Errorf("peer credentials of %s: %w", conn.RemoteAddr(), errors.ErrUnsupported)
}
