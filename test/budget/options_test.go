package budget

import (
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
)

// A memory budget that cannot hold one message of the receive limit is
// refused when the server or client is made, not found out at the first
// large message.
func TestMemoryBudgetOptionsChecked(t *testing.T) {
	if _, err := grpcipc.NewClient("unix:///nowhere/s.sock", grpcipc.WithConnMemoryBudget(1<<20)); err == nil || !strings.Contains(err.Error(), "needs at least") {
		t.Errorf("NewClient with a 1 MiB budget: %v; want it refused, saying what it needs", err)
	}
	if c, err := grpcipc.NewClient("unix:///nowhere/s.sock", grpcipc.WithConnMemoryBudget(16<<20)); err != nil {
		t.Errorf("NewClient with a 16 MiB budget: %v", err)
	} else {
		c.Close()
	}
	for _, tc := range []struct {
		name string
		opts []grpcipc.ServerOption
		ok   bool
	}{
		{"defaults", nil, true},
		{"a budget below one message of the receive limit", []grpcipc.ServerOption{grpcipc.WithConnMemoryBudget(4 << 20)}, false},
		{"a receive limit above the budget", []grpcipc.ServerOption{grpcipc.WithConnMemoryBudget(64 << 20), grpcipc.WithMaxRecvMsgSize(100 << 20)}, false},
		{"a caller budget below the connection budget", []grpcipc.ServerOption{grpcipc.WithConnMemoryBudget(128 << 20), grpcipc.WithCallerMemoryBudget(64 << 20)}, false},
		{"a large receive limit and default budgets", []grpcipc.ServerOption{grpcipc.WithMaxRecvMsgSize(100 << 20)}, true},
		{"a zero budget", []grpcipc.ServerOption{grpcipc.WithConnMemoryBudget(0)}, false},
	} {
		s, err := grpcipc.NewServer(tc.opts...)
		if (err == nil) != tc.ok {
			t.Errorf("%s: NewServer: %v, want ok %v", tc.name, err, tc.ok)
		}
		if s != nil {
			s.Stop()
		}
	}
}
