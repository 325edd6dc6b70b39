// Package testhooks lets the end-to-end suites under test/, which are
// packages of their own, reach what package grpcipc keeps unexported (as
// grpc-go's internal package does). Package grpcipc sets these variables
// in its testhooks.go; only tests call them.
//
// A hook's parameters and results that are the root package's types are
// typed any here (this package cannot import the root): each comment says
// what they hold. A hook whose whole signature names the root's types is an
// any holding that function; its caller asserts the type the comment gives.
package testhooks

// BudgetsInUse reports the memory budgets in use on s's fast-path
// connections and its callers' budgets; s is a *grpcipc.Server.
var BudgetsInUse func(s any) (conns []int64, callers map[string]int64)

// ClientBudgetUsed reports the fast-path client connection's memory budget
// in use (-1: none); cc is a *grpcipc.ClientConn.
var ClientBudgetUsed func(cc any) int64

// NewClientWithDialer is grpcipc.NewClient with dial making its
// connections (a seam to count them). It holds a
//
//	func(endpoint string, dial func(context.Context) (net.Conn, error), opts ...grpcipc.ClientOption) (*grpcipc.ClientConn, error)
var NewClientWithDialer any
