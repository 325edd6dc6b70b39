package grpcipc

import (
	"strings"
	"testing"
)

// ErrNotChild's text is a literal, so that go doc shows it whole; it must
// name the variable the code reads.
func TestErrNotChildNamesTheVariable(t *testing.T) {
	if !strings.Contains(ErrNotChild.Error(), childEnv) {
		t.Errorf("ErrNotChild (%q) does not name %s", ErrNotChild, childEnv)
	}
}
