package grpcipc

import (
	"context"
	"net"
)

// Named pipes are parsed on every OS; serving and dialing them on Windows
// comes with the named-pipe transport (go-winio), not yet built.

func listenPipe(_ context.Context, ep Endpoint, _ listenConfig) (net.Listener, error) {
	return nil, unsupportedErr(ep.String(), "named pipes are not served yet")
}

func dialPipe(_ context.Context, ep Endpoint) (net.Conn, error) {
	return nil, unsupportedErr(ep.String(), "named pipes are not dialed yet")
}
