package grpcipc

import (
	"context"
	"fmt"
	"os"

	"github.com/grpcipc/grpcipc/internal/fastpath"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
)

// MaxFilesPerCall is the most files [WithMaxFilesPerCall] lets a call carry:
// the most descriptors one message on a Unix socket carries (Linux's
// SCM_MAX_FD).
const MaxFilesPerCall = wire.MaxFilesPerFrame

// WithMaxFilesPerCall lets each call that comes over the fast path on a
// Unix socket (a socket path, an abstract socket, [StartChild]'s
// connection) carry up to n open files from the client ([WithFiles]),
// which its handler takes with [TakeFiles]. With 0, the default, a call
// that carries files is refused with FailedPrecondition before its
// handler runs, and the files are closed; so is one with more than n.
// Only calls that the policy lets the caller make get that far: a
// refused call's files are closed unseen.
//
// Files are capabilities: a handler can do with one what the client could
// (read a file the server could not open, write to a pipe, accept on a
// listening socket). Check what you are given before you trust it: its
// type and mode (os.File.Stat), and, for memory, its seals ([MapFile]
// checks them).
//
// The descriptors a caller's calls hold before their handlers take them
// are bounded: 4n on a connection, 16n on all of one caller's connections
// (the server's own user is not counted); a call over either bound is
// refused with ResourceExhausted. n is at most [MaxFilesPerCall].
func WithMaxFilesPerCall(n int) ServerOption {
	return serverOptionFunc(func(c *serverConfig) error {
		if n < 0 || n > MaxFilesPerCall {
			return fmt.Errorf("grpcipc: WithMaxFilesPerCall(%d): between 0 and %d (the most descriptors a message on a Unix socket carries)", n, MaxFilesPerCall)
		}
		c.maxFilesPerCall = n
		return nil
	})
}

// TakeFiles returns the files the client sent with the call whose handler
// (or interceptor) has ctx ([WithFiles]), and hands them over: the caller
// owns them from now on and must close them. The files not taken when the
// handler returns are closed. A second call returns nil, as does a call
// that carried no files or did not come over the fast path. The files are
// close-on-exec; their names say only that they were received.
func TakeFiles(ctx context.Context) []*os.File { return fastpath.TakeFiles(ctx) }

// WithFiles sends files with the call, over the fast path on a Unix
// socket (a socket path, an abstract socket, [StartChild]'s connection):
// the server's handler takes them with [TakeFiles]. The caller keeps its
// own: the server gets duplicates, sent with the call's first bytes (so a
// file may be closed once the call returns). At most [MaxFilesPerCall];
// more, a nil or a closed file fail the call with InvalidArgument, unsent.
//
// A call whose files cannot go fails, and is not sent: over HTTP/2 (TLS,
// TCP, another gRPC stack's server) with Unimplemented, also on a plain
// grpc.ClientConn, whose transport fails the call (the option is per-RPC
// credentials to grpc-go: do not pass per-RPC credentials after it to a
// plain grpc.ClientConn); on the fast path over a Windows named pipe, or
// to a server of an older fast path, with FailedPrecondition. A server that takes no files, or fewer, refuses
// the call with FailedPrecondition before its handler runs
// ([WithMaxFilesPerCall]).
func WithFiles(files ...*os.File) grpc.CallOption {
	return grpc.PerRPCCredsCallOption{Creds: &fastpath.FilesOption{Files: files}}
}

// ReceiveFiles collects the files the server sends with its response
// ([SendFiles]): when the call ends (a unary call returns; a stream's
// RecvMsg returns its last error or io.EOF), they are appended to *dst,
// whatever the call's outcome, and the caller owns them and must close
// them. The client takes at most [MaxFilesPerCall] a call; they are
// close-on-exec. Over HTTP/2 no files come, and *dst is left alone.
func ReceiveFiles(dst *[]*os.File) grpc.CallOption {
	return fastpath.ReceiveFilesOption{Dst: dst}
}

// ErrNoFiles is wrapped by [SendFiles]' error when the call cannot carry
// files: it did not come over the fast path on a Unix socket, its client
// did not ask for files ([ReceiveFiles]), it has ended, or it would carry
// more than [MaxFilesPerCall].
var ErrNoFiles = fastpath.ErrNoFiles

// SendFiles sends files to the client with the response of the call whose
// handler has ctx, at once and before the response's end: the caller
// keeps its own (the client gets duplicates). The client must have asked
// for files ([ReceiveFiles]). It fails, sending nothing, when the call did
// not come over the fast path on a Unix socket, its client did not ask,
// the call has ended, or the call's files would be more than
// [MaxFilesPerCall]; the error, which wraps [ErrNoFiles], says which (a
// handler that returns it as is fails the call with Unknown: return a
// status of your choosing, FailedPrecondition say, to tell the client).
func SendFiles(ctx context.Context, files ...*os.File) error {
	if err := fastpath.SendFiles(ctx, files...); err != nil {
		return fmt.Errorf("grpcipc: SendFiles: %w", err)
	}
	return nil
}
