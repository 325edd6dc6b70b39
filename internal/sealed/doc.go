// Package sealed makes and checks sealed memory files (Linux memfds sealed
// against writes, growth and shrinking), which one process can hand another
// with a call, and which the receiver can map and read in place: once the
// seals are set nobody, the sender included, can change the bytes or the
// size, so a reader sees neither torn data nor a SIGBUS from a truncation.
//
// Elsewhere every function fails with an error that wraps
// errors.ErrUnsupported.
package sealed

import "errors"

// ErrNotSealed is wrapped by Check's errors when a file lacks a seal that
// reading it in place needs, or is not a memory file that can carry seals.
var ErrNotSealed = errors.New("not sealed")
