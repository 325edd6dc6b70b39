// Package admission tests, end to end, who gets in: policies applied to
// callers' OS identities (read once, at accept, and not fooled by exec or
// mount namespaces), refusals that reveal nothing and cost little, floods of
// connections, and tcp, which carries no OS identity. Helpers run as other
// users when the tests run as root.
package admission

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
