package grpcipc

import (
	"fmt"
	"os"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"go.uber.org/goleak"
)

// helpers are what this test binary runs when started as a helper process
// (see testutil.HelperCommand): name -> function of the arguments, whose
// error makes the helper exit 1.
var helpers = map[string]func(args []string) error{}

func TestMain(m *testing.M) {
	if name := os.Getenv(testutil.HelperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "no helper %q\n", name)
			os.Exit(2)
		}
		// Flags before the helper's arguments belong to the test binary.
		args := os.Args[1:]
		for len(args) > 0 && len(args[0]) > 1 && args[0][0] == '-' {
			args = args[1:]
		}
		if err := h(args); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: %v\n", name, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	testutil.Cleanup()
	if code == 0 {
		if err := goleak.Find(testutil.LeakOptions...); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// RegisterHelper adds a helper for the external test package: test-only,
// as this file is.
func RegisterHelper(name string, f func(args []string) error) {
	if _, dup := helpers[name]; dup {
		panic("two helpers named " + name)
	}
	helpers[name] = f
}
