//go:build unix

package peercred

import (
	"fmt"
	"net"
	"syscall"
)

// withFD runs f on the connection's file descriptor.
func withFD(conn net.Conn, f func(fd int)) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("peer credentials: %T has no file descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err == nil {
		err = raw.Control(func(fd uintptr) { f(int(fd)) })
	}
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	return nil
}
