// Package bench holds the benchmarks of a connection and a call through
// the public API (the figures of docs/security.md, "Cost"): plain grpc-go
// against grpcipc, with its identity check, policies and TLS.
package bench

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
