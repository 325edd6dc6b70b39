// Package fastpath tests, end to end, grpcipc's fast path
// (docs/protocol.md): that callers and handlers see on it what they see on
// HTTP/2, the choice of protocol, what a peer that breaks the protocol
// gets, per-call errors, stalled streams and stops. It tests through the
// public API and raw frames only.
package fastpath

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
