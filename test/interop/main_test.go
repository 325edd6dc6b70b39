// Package interop tests that grpcipc speaks gRPC: grpc-go's own interop
// cases both ways, and grpcurl and Python's grpcio as peers (they skip, or
// fail under GRPCIPC_REQUIRE_INTEROP=1, when the peer is missing).
package interop

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
