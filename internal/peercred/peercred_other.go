//go:build !linux && !darwin && !freebsd && !windows

package peercred

import (
	"errors"
	"fmt"
	"net"
)

// Read: the other BSDs', Solaris's and AIX's peer credentials are not read.
func Read(conn net.Conn, _ bool, _ Want) (*Info, error) {
	return nil, fmt.Errorf("peer credentials of %s: %w", conn.RemoteAddr(), errors.ErrUnsupported)
}
