package grpcipc

import (
	"context"
	"net"
)

// NewClientWithDialer is NewClient with dial making its connections
// (tests only: a seam to count them).
func NewClientWithDialer(endpoint string, dial func(context.Context) (net.Conn, error), opts ...ClientOption) (*ClientConn, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	return newClientConn(ep, dial, opts)
}
