// Package fastpath is grpcipc's fast path (docs/protocol.md) with gRPC's
// semantics: the engines of a server's and a client's connection, their
// calls, statuses, metadata, flow control and memory budgets.
//
// It is the third of three layers: internal/wire reads and writes frames
// (bytes only), internal/fastio holds their buffers, the writer and the
// budgets' accounting, and this package runs calls on them. The root
// package configures it through a narrow seam ([ServerConfig], [Caller],
// [ClientConfig], [CallInfo]) and speaks HTTP/2 beside it; this package
// never imports the root, and knows nothing of policies or identities
// beyond what [Caller] answers.
package fastpath
