//go:build !linux

package sealed

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

var errNoMemfd = fmt.Errorf("sealed memory files are Linux's (memfd_create and F_ADD_SEALS), not %s's: %w", runtime.GOOS, errors.ErrUnsupported)

// Create fails: see the package's doc.
func Create(string, []byte) (*os.File, error) { return nil, errNoMemfd }

// Check fails: see the package's doc.
func Check(*os.File) (int, error) { return 0, errNoMemfd }

// Map fails: see the package's doc.
func Map(*os.File, int) ([]byte, error) { return nil, errNoMemfd }

// Unmap does nothing: Map maps nothing here.
func Unmap([]byte) error { return nil }

// NewWritable fails: see the package's doc.
func NewWritable(string, int) (*os.File, []byte, error) { return nil, nil, errNoMemfd }

// Seal fails: see the package's doc.
func Seal(*os.File, []byte) error { return errNoMemfd }
