package grpcipc

import (
	"fmt"
	"io/fs"

	"google.golang.org/grpc"
)

// ListenOption configures [Listen]. An option that does not apply to the
// endpoint's transport (a file mode for an abstract socket, say) makes
// Listen fail rather than being ignored.
type ListenOption interface {
	applyListen(*listenConfig) error
}

// ClientOption configures [NewClient].
type ClientOption interface {
	applyClient(*clientConfig) error
}

type listenConfig struct {
	ep      Endpoint
	mode    fs.FileMode
	modeSet bool
}

type clientConfig struct {
	ep       Endpoint
	grpcOpts []grpc.DialOption
}

type listenOptionFunc func(*listenConfig) error

func (f listenOptionFunc) applyListen(c *listenConfig) error { return f(c) }

type clientOptionFunc func(*clientConfig) error

func (f clientOptionFunc) applyClient(c *clientConfig) error { return f(c) }

// WithSocketMode sets the permission bits of a Unix socket file (default
// 0600: only the server's own user can connect). The mode is set before the
// socket accepts its first connection. Only the permission bits (0777) may
// be set, and only for unix endpoints with a path.
func WithSocketMode(mode fs.FileMode) ListenOption {
	return listenOptionFunc(func(c *listenConfig) error {
		if c.ep.Transport != Unix {
			return fmt.Errorf("listen %s: a socket file mode applies only to unix socket paths, not to %s endpoints", c.ep, c.ep.Transport)
		}
		if mode&^fs.ModePerm != 0 {
			return fmt.Errorf("listen %s: socket mode %v has bits other than permissions", c.ep, mode)
		}
		c.mode, c.modeSet = mode, true
		return nil
	})
}

// WithGRPCDialOptions adds grpc-go dial options to those [NewClient] sets.
// They are applied after grpcipc's own, so that a later option (for example
// [grpc.WithTransportCredentials]) replaces grpcipc's choice.
func WithGRPCDialOptions(opts ...grpc.DialOption) ClientOption {
	return clientOptionFunc(func(c *clientConfig) error {
		c.grpcOpts = append(c.grpcOpts, opts...)
		return nil
	})
}
