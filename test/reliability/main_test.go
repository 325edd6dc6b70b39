// Package reliability tests grpcipc under load and failure: thousands of
// connections, connect/call/close cycles without leaks, servers killed or
// stopped during calls, cancellations, half-open connections and bad
// input on either protocol.
package reliability

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
