//go:build !linux

package grpcipc

// pinnedProcess: only Linux can pin the peer process (a pidfd), so nothing
// is read of it by PID elsewhere.
type pinnedProcess struct{}

func (pinnedProcess) executable() string    { return "" }
func (pinnedProcess) groups() ([]int, bool) { return nil, false }
func (pinnedProcess) release()              {}
