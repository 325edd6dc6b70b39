package main

import (
	"os"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"go.uber.org/goleak"
)

// mainEnv makes this test binary act as the grpcipc command, so the CLI is
// tested as a real subprocess (and "demo" starts its server the same way).
const mainEnv = "GRPCIPC_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
	}
	goleak.VerifyTestMain(m, append(testutil.LeakOptions, goleak.Cleanup(func(code int) {
		testutil.Cleanup() // the copies of the binary made for other users
		os.Exit(code)
	}))...)
}
