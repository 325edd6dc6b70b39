package testutil

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helpers are what a test binary runs when started as a helper process
// (see [HelperCommand]): name -> function of the arguments, whose error
// makes the helper exit 1.
var helpers = map[string]func(args []string) error{}

// RegisterHelper adds a helper that [HelperCommand] can start by name; call
// it from an init function of the test package (or of a package it
// imports).
func RegisterHelper(name string, f func(args []string) error) {
	if _, dup := helpers[name]; dup {
		panic("two helpers named " + name)
	}
	helpers[name] = f
}

// Main is the TestMain of grpcipc's test packages: started as a helper
// ([HelperEnv] set), the binary runs that helper and exits; otherwise it
// runs the tests, then [Cleanup], and fails if goroutines leaked.
func Main(m *testing.M) {
	if name := os.Getenv(HelperEnv); name != "" {
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
	Cleanup()
	if code == 0 {
		if err := goleak.Find(LeakOptions...); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
