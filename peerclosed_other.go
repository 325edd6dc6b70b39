//go:build !unix && !windows

package grpcipc

// isPeerClosedErrno: no OS errors are known here.
func isPeerClosedErrno(error) bool { return false }
