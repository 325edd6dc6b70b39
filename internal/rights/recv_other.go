//go:build unix && !linux

package rights

import "net"

// receiver reads with net's ReadMsgUnix, which makes what arrives
// close-on-exec.
type receiver struct{ oob []byte }

func (r *receiver) init(_ *net.UnixConn, oob []byte) { r.oob = oob }

func (r *receiver) recv(c *net.UnixConn, p []byte) (int, int, error) {
	n, oobn, _, _, err := c.ReadMsgUnix(p, r.oob)
	return n, oobn, err
}
