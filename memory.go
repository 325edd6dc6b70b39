package grpcipc

import (
	"errors"
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

// A MemoryFile is a new memory file mapped for writing: fill Bytes in
// place (render a frame, decode an image, read a file into it), then Seal
// it and send the sealed file with a call. Unlike [SealedFile], nothing
// is copied: the bytes are made where the receiver will read them.
// Linux only.
type MemoryFile struct {
	mu     sync.Mutex
	f      *os.File
	b      []byte
	sealed bool
}

// NewMemoryFile returns a memory file of size bytes (zeros), named name
// in /proc/PID/fd, mapped for writing. Elsewhere than on Linux it fails
// with an error that wraps [errors.ErrUnsupported].
func NewMemoryFile(name string, size int) (*MemoryFile, error) {
	f, b, err := sealed.NewWritable(name, size)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: NewMemoryFile: %w", err)
	}
	return &MemoryFile{f: f, b: b}, nil
}

// Bytes returns the file's bytes to write; nil after Seal or Close, which
// unmap them: a slice taken before faults if used after.
func (m *MemoryFile) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.b
}

// Seal unmaps the bytes and seals the file against writes, growth and
// shrinking, as [SealedFile] does, and returns it: the caller owns it
// (send it with [WithFiles] or [SendFiles], then close it). Seal is done
// once; a second call fails.
func (m *MemoryFile) Seal() (*os.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sealed || m.f == nil {
		return nil, errors.New("grpcipc: MemoryFile.Seal: sealed or closed already")
	}
	b := m.b
	m.b = nil
	if err := sealed.Seal(m.f, b); err != nil {
		m.f.Close()
		m.f = nil
		return nil, fmt.Errorf("grpcipc: MemoryFile.Seal: %w", err)
	}
	m.sealed = true
	f := m.f
	m.f = nil
	return f, nil
}

// Close discards a memory file that was not sealed (after Seal it does
// nothing: the sealed file is the caller's).
func (m *MemoryFile) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	err := sealed.Unmap(m.b)
	m.b = nil
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	m.f = nil
	return err
}
