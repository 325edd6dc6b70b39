// Package files tests descriptors carried with calls on the fast path
// (grpcipc.WithMaxFilesPerCall, TakeFiles): what a handler receives, and
// what happens to descriptors a client attaches where it should not.
package files

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
