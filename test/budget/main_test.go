// Package budget tests, end to end, the fast path's memory budgets
// (docs/protocol.md, "Memory budgets") and the other bounds on what one
// caller may hold, against hostile callers and hostile servers in other
// processes: the heap stays within bounds, every charge is given back, and
// well-behaved calls are served meanwhile.
package budget

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
