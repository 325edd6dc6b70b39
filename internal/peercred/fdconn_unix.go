//go:build unix

package peercred

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// ReadFD is [Read] for a socket descriptor that is not a net.Conn: one
// received from another process, whose open file description that process
// may still hold (and whose flags it may change), so that it is never
// read, written or polled here.
func ReadFD(fd int, want Want) (*Info, error) {
	return Read(fdConn(fd), true, want)
}

// fdConn offers a bare descriptor to Read, which only asks for it.
type fdConn int

var errBare = errors.New("a bare descriptor is not read or written")

func (c fdConn) SyscallConn() (syscall.RawConn, error) { return rawFD(c), nil }
func (fdConn) Read([]byte) (int, error)                { return 0, errBare }
func (fdConn) Write([]byte) (int, error)               { return 0, errBare }
func (fdConn) Close() error                            { return nil }
func (fdConn) LocalAddr() net.Addr                     { return &net.UnixAddr{Net: "unix"} }
func (fdConn) RemoteAddr() net.Addr                    { return &net.UnixAddr{Net: "unix"} }
func (fdConn) SetDeadline(time.Time) error             { return errBare }
func (fdConn) SetReadDeadline(time.Time) error         { return errBare }
func (fdConn) SetWriteDeadline(time.Time) error        { return errBare }

type rawFD int

func (r rawFD) Control(f func(fd uintptr)) error { f(uintptr(r)); return nil }
func (rawFD) Read(func(fd uintptr) bool) error   { return errBare }
func (rawFD) Write(func(fd uintptr) bool) error  { return errBare }
