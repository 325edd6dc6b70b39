// Package children tests StartChild, ChildListener and ParentConn: a
// parent and the child it started call each other over an inherited
// connection, each sure of the other's identity, and the child's end
// (exit, signals, Close, Wait) and output are reported as they happened.
package children

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
