//go:build unix && !linux

package peercred

import "errors"

// ReadChild: outside Linux, a child's identity is its PID alone (its
// uid and groups are not read, so policies other than "*" do not admit
// it, and its executable is not known).
func ReadChild(pid int) (*Info, error) {
	return &Info{PID: pid, HasPID: true, ExeErr: errors.New("the executable of a child is read on Linux only")}, nil
}
