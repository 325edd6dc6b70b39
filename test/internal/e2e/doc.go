// Package e2e holds what the end-to-end suites under test/ share: servers
// and clients to test with, the "call" helper process that calls a server
// as another user, fast-path frames spoken by hand, and checks of logs,
// goroutines and the heap. It is for tests only (it calls into testing),
// and each suite's TestMain is internal/testutil's Main.
package e2e
