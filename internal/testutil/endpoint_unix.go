//go:build unix

package testutil

import (
	"path/filepath"
	"testing"
)

func endpoint(t testing.TB) string {
	return "unix://" + filepath.Join(ShortTempDir(t), "s.sock")
}
