//go:build !unix

package fastio

import (
	"errors"
	"net"
	"os"
)

var errNoFiles = errors.New("grpcipc: descriptors travel only on Unix sockets")

// CanCarryFiles says whether c can send descriptors: never here.
func CanCarryFiles(net.Conn) bool { return false }

// DupFiles fails here.
func DupFiles([]*os.File) ([]int, error) { return nil, errNoFiles }

func sendFiles(net.Conn, []byte, []int) (int, error) { return 0, errNoFiles }

func closeFDs([]int) {}
