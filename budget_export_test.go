package grpcipc

// BudgetsInUse reports the memory budgets in use on s's fast-path
// connections and its callers' budgets (tests only).
func BudgetsInUse(s *Server) (conns []int64, callers map[string]int64) {
	return s.fast.BudgetsInUse()
}

// ClientBudgetUsed reports the fast-path client connection's memory budget
// in use (-1: none) (tests only).
func ClientBudgetUsed(cc *ClientConn) int64 {
	cc.mu.Lock()
	fc := cc.fc
	cc.mu.Unlock()
	if fc == nil {
		return -1
	}
	return fc.BudgetUsed()
}
