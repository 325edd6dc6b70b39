package sealed

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
