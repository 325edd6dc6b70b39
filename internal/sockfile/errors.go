package sockfile

import "errors"

// The errors of socket files, re-exported by the root package under the
// same names, where their documentation is.
var (
	ErrAddressInUse    = errors.New("address already in use")
	ErrNotSocket       = errors.New("path exists and is not a socket")
	ErrUnsafeDirectory = errors.New("unsafe socket directory")
)

// InUseError is an [ErrAddressInUse] with the detail of who holds the
// address and, when a system call reported it, that call's error.
type InUseError struct {
	Detail string
	Cause  error
}

func (e *InUseError) Error() string { return ErrAddressInUse.Error() + ": " + e.Detail }

// Unwrap returns [ErrAddressInUse] and the cause.
func (e *InUseError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrAddressInUse}
	}
	return []error{ErrAddressInUse, e.Cause}
}
