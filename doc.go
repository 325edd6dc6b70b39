// Package grpcipc runs gRPC between processes on one machine over the
// operating system's local transports instead of a TCP port: Unix domain
// sockets, Linux abstract sockets and Windows named pipes.
//
// A server listens with [Listen] and serves with [NewServer], which speaks
// gRPC over HTTP/2 (for every gRPC client) and grpcipc's fast path (a lean
// framing of the same calls, docs/protocol.md) on one listener; generated
// code registers on it unchanged. A client from [NewClient] offers the fast
// path in its HTTP/2 preface and speaks HTTP/2 on the same connection to a
// server that does not take it up; generated clients take it unchanged.
// [ServerOptions] makes the same checks for a plain grpc.Server (HTTP/2
// only). Both take the same endpoint strings (see [ParseEndpoint]), and [DefaultEndpoint] picks a
// per-user one for this OS:
//
//	unix:///run/app/app.sock     Unix socket file (also unix:/abs, unix:rel)
//	unix-abstract:app            Linux abstract socket (also unix:@app)
//	npipe:app                    Windows named pipe (also \\.\pipe\app)
//	tcp://host:port              TCP, for a peer on another machine
//
// Two more ways to get a connection: [StartChild] starts a program with a
// connection to it that nothing else can reach (a socket pair, or a pipe
// only the child's PID may use), which the child serves on
// [ChildListener] and through which it may call the parent back
// ([ParentConn]); [ActivatedListeners] takes the sockets systemd hands
// over (socket activation). Package identity is grpcipc.v1.Identity, a
// service that tells each caller how the server saw it.
//
// On the fast path over Unix sockets a call can carry open files, both
// ways ([WithFiles], [ReceiveFiles], [WithMaxFilesPerCall], [TakeFiles],
// [SendFiles]), and with them sealed shared memory that neither side can
// change under the other ([SealedFile], [NewMemoryFile], [MapFile]):
// docs/files.md.
//
// # Security
//
// A socket file is created with mode 0600 before it accepts its first
// connection. On every connection the server reads the caller's OS
// identity ([Creds]) once, when it accepts it, and applies a [Policy]
// ([WithPolicy]), whatever listener it serves; the default, [SameUserPolicy], admits only the server's
// own user, on abstract sockets (which have no file permissions) too. A
// field the OS did not tell fails closed: a deny rule that needs it
// matches, an allow rule does not. An exe: principal compares the file by
// device and inode and never admits alone (see [ParsePrincipal] for what
// it does not protect against). The server applies per-method rules on
// both protocols and gives handlers the caller's identity
// ([AuthInfoFromContext]); a refused call fails with
// codes.PermissionDenied, whether the method exists or not, before a byte
// of its request is decoded, and no handler runs; refused callers hold a
// bounded share of the server, and admitted ones what the fast path's
// memory budgets allow ([WithConnMemoryBudget], [WithCallerMemoryBudget]).
// [Listen] never removes a live server's
// socket, nor anything that is not a socket; it replaces a stale socket,
// and refuses a directory another user could write to or repoint. A tcp
// endpoint, which has no OS identity, serves only callers with a verified
// TLS client certificate unless [WithUnauthenticatedTCP] says otherwise.
//
// A client made with [NewClient] checks the server before it sends a
// request: by default the server must run as the client's own user or as
// root ([WithExpectedServer] changes that).
//
// # Platforms
//
// Linux: everything here, tested in CI. macOS and FreeBSD: Unix sockets
// and peer credentials (LOCAL_PEERCRED); compiled and vetted in CI, not run
// there. Windows: named pipes (go-winio; a DACL from the policy, the
// name created exclusively, clients at the Anonymous impersonation level)
// and AF_UNIX sockets; tested under Wine in CI.
package grpcipc
