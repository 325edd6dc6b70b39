package grpcipc

import (
	"errors"
	"fmt"
)

// Named errors. Test for them with [errors.Is]; the errors returned carry the
// endpoint or path involved and the reason in their message.
var (
	// ErrInvalidEndpoint is wrapped by every error of [ParseEndpoint] and
	// [DefaultEndpoint]: the string is not an endpoint this OS can use.
	ErrInvalidEndpoint = errors.New("invalid endpoint")

	// ErrAddressInUse is returned by [Listen] when a live server already
	// accepts connections at the endpoint. Its socket file is left alone.
	ErrAddressInUse = errors.New("address already in use")

	// ErrNotSocket is returned by [Listen] when something other than a socket
	// (a regular file, a directory, a symbolic link, ...) stands at the
	// socket path. It is never removed.
	ErrNotSocket = errors.New("path exists and is not a socket")

	// ErrUnsafeDirectory is returned by [Listen] when the directory that
	// would hold the socket could let another user replace it: it is owned
	// by another user, or others may write to it and it is not sticky.
	ErrUnsafeDirectory = errors.New("unsafe socket directory")
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

// inUseError is an [ErrAddressInUse] with the detail of who holds the
// address and, when a system call reported it, that call's error.
type inUseError struct {
	detail string
	cause  error
}

func (e *inUseError) Error() string { return ErrAddressInUse.Error() + ": " + e.detail }

func (e *inUseError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrAddressInUse}
	}
	return []error{ErrAddressInUse, e.cause}
}
