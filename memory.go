package grpcipc

import (
	"fmt"
	"os"
	"sync"

	"github.com/grpcipc/grpcipc/internal/sealed"
)

// ErrNotSealed is wrapped by [MapFile]'s error when the file is not a
// memory file sealed against writes and shrinking: its sender could change
// or truncate it while it is read, so it is not mapped.
var ErrNotSealed = sealed.ErrNotSealed

// SealedFile returns a new memory file (a Linux memfd) that holds a copy
// of data and is sealed against writes, growth and shrinking: once it is
// handed to another process, neither side can change it, and the receiver can read it
// in place with [MapFile]. name labels it in /proc/PID/fd (it need not
// be unique). The file is close-on-exec and read from its start; the
// memory is freed when the last descriptor of it, in any process, is
// closed. Elsewhere than on Linux it fails with an error that wraps
// [errors.ErrUnsupported].
func SealedFile(name string, data []byte) (*os.File, error) {
	return withPrefix(sealed.Create(name, data))
}

// A Mapping is a sealed memory file mapped read-only into this process
// by [MapFile].
type Mapping struct {
	mu sync.Mutex
	b  []byte
}

// MapFile maps f, a sealed memory file another process sent (see
// [SealedFile]), read-only. It first checks that f is a memory file that
// carries the seals F_SEAL_WRITE and F_SEAL_SHRINK, which nobody can take
// off: the bytes it maps cannot change or go while they are read (no torn
// reads, no SIGBUS). Any other file (unsealed, sealed only against future
// writes, a regular file, a pipe, a socket, a directory) is refused with
// an error that wraps [ErrNotSealed] and says what is missing. The
// mapping holds its own reference: f can be closed at once. Elsewhere
// than on Linux it fails with an error that wraps [errors.ErrUnsupported].
func MapFile(f *os.File) (*Mapping, error) {
	size, err := sealed.Check(f)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: MapFile: %w", err)
	}
	b, err := sealed.Map(f, size)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: MapFile: %w", err)
	}
	return &Mapping{b: b}, nil
}

// Bytes returns the mapped bytes, valid until Close: reading them after
// Close faults. nil after Close.
func (m *Mapping) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.b
}

// Close unmaps the bytes. Closing a Mapping again does nothing.
func (m *Mapping) Close() error {
	m.mu.Lock()
	b := m.b
	m.b = nil
	m.mu.Unlock()
	if b == nil {
		return nil
	}
	if err := sealed.Unmap(b); err != nil {
		return fmt.Errorf("grpcipc: Mapping.Close: %w", err)
	}
	return nil
}
