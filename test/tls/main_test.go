// Package tls tests TLS over local endpoints: mutual TLS, pins, expired
// certificates, and what a client whose certificate is refused is told.
package tls

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
