package grpcipc

import (
	"errors"
	"fmt"

	"github.com/grpcipc/grpcipc/internal/sockfile"
)

// Named errors. Test for them with [errors.Is]; the errors returned carry the
// endpoint or path involved and the reason in their message.
var (
	// ErrInvalidEndpoint is wrapped by every error of [ParseEndpoint] and
	// [DefaultEndpoint]: the string is not an endpoint this OS can use.
	ErrInvalidEndpoint = errors.New("invalid endpoint")

	// ErrAddressInUse is returned by [Listen] when a live server already
	// accepts connections at the endpoint. Its socket file is left alone.
	ErrAddressInUse = sockfile.ErrAddressInUse

	// ErrNotSocket is returned by [Listen] when something other than a socket
	// (a regular file, a directory, a symbolic link, ...) stands at the
	// socket path. It is never removed.
	ErrNotSocket = sockfile.ErrNotSocket

	// ErrUnsafeDirectory is returned by [Listen] when the directory that
	// would hold the socket could let another user replace it: it, or a
	// directory above it, is owned by another user, or writable by others
	// and not sticky; or it is a symbolic link, or a link above it is
	// another user's.
	ErrUnsafeDirectory = sockfile.ErrUnsafeDirectory
)

// EndpointError describes why an endpoint string was refused. It wraps
// [ErrInvalidEndpoint], and also [errors.ErrUnsupported] when the transport
// exists but not on this OS.
type EndpointError struct {
	Endpoint string // the string as given
	Reason   string // why it was refused
	err      error  // the sentinel(s) it wraps
}

// Error implements the error interface.
func (e *EndpointError) Error() string {
	return fmt.Sprintf("endpoint %q: %s", e.Endpoint, e.Reason)
}

// Unwrap returns the sentinel errors this error stands for.
func (e *EndpointError) Unwrap() []error {
	if e.err != nil {
		return []error{ErrInvalidEndpoint, e.err}
	}
	return []error{ErrInvalidEndpoint}
}

func endpointErr(s, format string, args ...any) error {
	return &EndpointError{Endpoint: s, Reason: fmt.Sprintf(format, args...)}
}

func unsupportedErr(s, format string, args ...any) error {
	return &EndpointError{Endpoint: s, Reason: fmt.Sprintf(format, args...), err: errors.ErrUnsupported}
}
