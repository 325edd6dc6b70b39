package grpcipc

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to (listen_unix_test.go
// registers them), or the tests and a check for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
