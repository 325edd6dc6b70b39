package grpcipc

import (
	"errors"
	"fmt"
	"io/fs"
)

type listenConfig struct {
	ep      Endpoint
	mode    fs.FileMode
	modeSet bool
	gid     int // group to give the socket file, or -1
	self    identity
	policy  *Policy
}

type listenOptionFunc func(*listenConfig) error

func (f listenOptionFunc) applyListen(c *listenConfig) error { return f(c) }

// WithSocketMode sets the permission bits of a Unix socket file (default
// 0600: only the server's own user can connect). The mode is set before the
// socket accepts its first connection. Only the permission bits (0777) may
// be set, and only for unix endpoints with a path.
func WithSocketMode(mode fs.FileMode) ListenOption {
	return listenOptionFunc(func(c *listenConfig) error {
		if c.ep.Transport == "" {
			return errors.New("a socket file mode applies only to the unix socket paths of Listen: an activated socket's is the unit's (SocketMode=)")
		}
		if c.ep.Transport != Unix {
			return fmt.Errorf("a socket file mode applies only to unix socket paths, not to %s endpoints", c.ep.Transport)
		}
		if mode&^fs.ModePerm != 0 {
			return fmt.Errorf("socket mode %v has bits other than permissions", mode)
		}
		c.mode, c.modeSet = mode, true
		return nil
	})
}

// DefaultSocketMode is the permission of a socket file that [Listen] creates
// when no [WithSocketMode] is given: read and write for the owner only, so
// that only the server's own user (and root) can connect.
const DefaultSocketMode fs.FileMode = 0o600
