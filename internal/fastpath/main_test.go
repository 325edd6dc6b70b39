package fastpath

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions...) }
