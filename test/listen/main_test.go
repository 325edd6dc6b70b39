// Package listen tests Listen end to end: socket files and their
// directories (modes, owners, symbolic links, other users), abstract
// names, sockets handed over by systemd, and the policy given once.
package listen

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
