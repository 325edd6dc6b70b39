//go:build unix

package main

import (
	"strings"
	"testing"
)

func TestCLIErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"serve", "--nope"}, 2, "flag provided but not defined: --nope"},
		{[]string{"serve", "extra"}, 2, "serve takes no arguments"},
		{[]string{"serve", "--listen", "foo://x"}, 2, `unknown scheme "foo"`},
		{[]string{"serve", "--listen", "unix:///" + strings.Repeat("x", 120)}, 2, "allows at most 107"},
		{[]string{"serve", "--listen", "npipe:x"}, 1, "named pipes exist only on Windows"},
		{[]string{"call"}, 2, "call takes one or two arguments"},
		{[]string{"call", "NoSlash"}, 2, `method "NoSlash": want package.Service/Method`},
		{[]string{"call", "--connect", "unix:", "a.B/C"}, 2, "empty socket path"},
		{[]string{"list", "--timeout", "soon"}, 2, `invalid value "soon"`},
		{[]string{"endpoint", "a/b"}, 1, "application name may hold only"},
		{[]string{"endpoint", "a", "b"}, 2, "at most one argument"},
		{[]string{"demo", "--count", "0"}, 2, "--count must be from 1"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
			oneErrorLine(t, stderr, tt.want)
		})
	}
	code, _, stderr := runCLI(t, nil)
	if code != 2 || !strings.Contains(stderr, "Usage:") {
		t.Errorf("no arguments: exit %d, %q; want 2 and the usage", code, stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"call", "-h"}, {"list", "--help"}, {"endpoint", "--help"}, {"demo", "--help"}, {"bench", "--help"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
		if len(args) == 2 && !strings.Contains(stdout, "grpcipc "+args[0]) {
			t.Errorf("%v: usage does not name the command: %q", args, stdout)
		}
	}
}
