package grpcipc

import (
	"context"
	"net"
)

// Unix sockets on Windows need the socket file's ACL set before the socket
// accepts; until that is built, Listen refuses them rather than serve one
// that any local user could reach.
func listenUnixPath(_ context.Context, ep Endpoint, _ listenConfig) (net.Listener, error) {
	return nil, unsupportedErr(ep.String(), "unix socket listeners are not served on Windows yet")
}

func listenAbstract(_ context.Context, ep Endpoint) (net.Listener, error) {
	return nil, unsupportedErr(ep.String(), "abstract sockets exist only on Linux")
}
