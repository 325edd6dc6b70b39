//go:build linux

package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestMain serves, when StartChild starts this test binary as the child.
func TestMain(m *testing.M) {
	if os.Getenv("SHM_EXAMPLE_SERVER") == "1" {
		if err := serve(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHandOver hands 32 MiB to a child process; the child's checksum is
// the client's (run checks it) and the output says so.
func TestHandOver(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), 32<<20, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "handed 33554432 bytes to pid ") || !strings.Contains(out.String(), "as sent") {
		t.Fatalf("output %q", out.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"4096": 4096, "256MiB": 256 << 20, "1GiB": 1 << 30, "3KiB": 3 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1MiB", "MiB", "1TB", "1.5MiB", "5GiB", "9999999999GiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q): no error", bad)
		}
	}
}
