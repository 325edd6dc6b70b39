//go:build !windows

package grpcipc

import (
	"context"
	"net"
)

func dialPipe(_ context.Context, ep Endpoint, _ bool) (net.Conn, error) {
	return nil, unsupportedErr(ep.String(), "named pipes exist only on Windows")
}
