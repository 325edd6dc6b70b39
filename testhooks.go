package grpcipc

import (
	"context"
	"net"

	"github.com/grpcipc/grpcipc/internal/testhooks"
)

// The hooks of internal/testhooks exist for the suites under test/ (which
// cannot see this package's test files); nothing else calls them.
func init() {
	testhooks.BudgetsInUse = func(s any) ([]int64, map[string]int64) { return budgetsInUse(s.(*Server)) }
	testhooks.ClientBudgetUsed = func(cc any) int64 { return clientBudgetUsed(cc.(*ClientConn)) }
	testhooks.NewClientWithDialer = newClientWithDialer
}

// budgetsInUse reports the memory budgets in use on s's fast-path
// connections and its callers' budgets (tests only).
func budgetsInUse(s *Server) (conns []int64, callers map[string]int64) {
	return s.fast.BudgetsInUse()
}

// clientBudgetUsed reports the fast-path client connection's memory budget
// in use (-1: none) (tests only).
func clientBudgetUsed(cc *ClientConn) int64 {
	cc.mu.Lock()
	fc := cc.fc
	cc.mu.Unlock()
	if fc == nil {
		return -1
	}
	return fc.BudgetUsed()
}

// newClientWithDialer is NewClient with dial making its connections
// (tests only: a seam to count them).
func newClientWithDialer(endpoint string, dial func(context.Context) (net.Conn, error), opts ...ClientOption) (*ClientConn, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	return newClientConn(ep, dial, opts)
}
