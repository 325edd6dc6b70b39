package grpcipc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/grpcipc/grpcipc/internal/sockfile"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// withPrefix is what an exported function returns of an error that says
// why alone, its text and the sentinels it wraps being enough: "grpcipc:
// invalid policy: ...".
func withPrefix[T any](v T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, fmt.Errorf("grpcipc: %w", err)
	}
	return v, nil
}

// netReason is err without a [*net.OpError] around it, whose words
// ("listen tcp 127.0.0.1:80: ", "dial unix /run/x.sock: ") repeat what
// grpcipc's own say first: the operation and the endpoint. What is left
// (a *os.SyscallError, say) still matches errors.Is for its errno.
func netReason(err error) error {
	if op, ok := err.(*net.OpError); ok && op.Err != nil {
		return op.Err
	}
	return err
}

// EndpointError describes why an endpoint string was refused. It wraps
// [ErrInvalidEndpoint], and also [errors.ErrUnsupported] when the transport
// exists but not on this OS. The functions that take an endpoint return it
// as it is: its text names the endpoint.
type EndpointError struct {
	Endpoint string // the string as given
	Reason   string // why it was refused
	err      error  // the sentinel(s) it wraps
}

// Error implements the error interface: `grpcipc: endpoint "bogus": not
// an endpoint: ...`.
func (e *EndpointError) Error() string {
	return fmt.Sprintf("grpcipc: endpoint %q: %s", e.Endpoint, e.Reason)
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

// ChildExitError says how a child started by [StartChild] ended, when
// that was not a clean end: [Child.Wait] and [Child.Close] return it (see
// Close for what is clean). It wraps the [*exec.ExitError] of the
// child's process, so errors.As finds either.
type ChildExitError struct {
	PID      int       // the child's process ID
	ExitCode int       // the exit status; -1 when a signal ended the child
	Signal   os.Signal // the signal that ended the child (Unix), or nil
	Killed   bool      // Close killed the child: it had not exited within the stop timeout

	err     *exec.ExitError
	timeout time.Duration // the stop timeout, for Killed's message
	before  bool          // the child ended before Close began: "had exited"
}

// Error implements the error interface: "grpcipc: the child (pid 4242)
// had exited: exit status 3", "... exited: signal: killed", "... did not
// exit within 5s of Close: killed".
func (e *ChildExitError) Error() string {
	how := fmt.Sprintf("exit status %d", e.ExitCode)
	if e.Signal != nil {
		how = "signal: " + e.Signal.String()
	}
	switch {
	case e.Killed:
		return fmt.Sprintf("grpcipc: the child (pid %d) did not exit within %v of Close: killed", e.PID, e.timeout)
	case e.before:
		return fmt.Sprintf("grpcipc: the child (pid %d) had exited: %s", e.PID, how)
	}
	return fmt.Sprintf("grpcipc: the child (pid %d) exited: %s", e.PID, how)
}

// Unwrap returns the [*exec.ExitError] of the child's process.
func (e *ChildExitError) Unwrap() error {
	if e.err == nil {
		return nil
	}
	return e.err
}

// RefusedError is the error of a call that the server's policy refused. It
// unwraps to [ErrPermissionDenied] and becomes codes.PermissionDenied at the
// gRPC boundary. Its message names the caller as the server saw it and the
// method, not the rule, which the server logs.
type RefusedError struct {
	Caller string // the caller's identity, as [Creds.String] gives it
	Method string // the full method name, or "" for a refused connection
}

func (e *RefusedError) Error() string {
	if e.Method == "" {
		return fmt.Sprintf("grpcipc: %s: %s is not admitted by this server's policy", ErrPermissionDenied, e.Caller)
	}
	return fmt.Sprintf("grpcipc: %s: %s may not call %s", ErrPermissionDenied, e.Caller, e.Method)
}

// Unwrap returns [ErrPermissionDenied].
func (e *RefusedError) Unwrap() error { return ErrPermissionDenied }

// GRPCStatus makes the error codes.PermissionDenied for grpc-go.
func (e *RefusedError) GRPCStatus() *status.Status {
	return status.New(codes.PermissionDenied, e.Error())
}
