package grpcipc

import (
	"net"

	"github.com/grpcipc/grpcipc/internal/fastpath"
	"google.golang.org/grpc"
)

// Settings grpcipc gives grpc-go for local transports, chosen with
// "grpcipc bench" on a 2-core Linux machine (docs/performance.md):
//
//   - Static flow-control windows of 4 MiB per stream and 16 MiB per
//     connection, on both sides. A local peer reads as fast as it is
//     written to, so windows only need to cover a burst; fixing them also
//     turns off grpc-go's BDP-estimation pings. This is what let 1 MiB
//     streams pass grpc-go over TCP.
//   - Read and write buffers of 256 KiB (grpc-go: 32 KiB), so that a
//     64 KiB or larger message moves in few system calls. grpc-go shares
//     write buffers by default, giving them back between flushes: a
//     thousand idle connections hold their read buffers only.
//   - At most 256 concurrent streams per HTTP/2 connection (grpc-go: no
//     limit), as on the fast path: a caller that opens streams and never
//     sends costs a bounded number of goroutines whichever protocol it
//     picks (WithGRPCServerOptions(grpc.MaxConcurrentStreams(n)) changes it).
//   - Socket buffers of 4 MiB (SO_SNDBUF and SO_RCVBUF) on Unix sockets,
//     whose default (about 208 KiB) made a 1 MiB message several trips
//     through the scheduler. They are limits; the kernel allocates on use.
const (
	localStreamWindow = 4 << 20
	localConnWindow   = 16 << 20
	localBufferSize   = 256 << 10
	localSocketBuffer = 4 << 20
)

func localServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StaticStreamWindowSize(localStreamWindow),
		grpc.StaticConnWindowSize(localConnWindow),
		grpc.ReadBufferSize(localBufferSize),
		grpc.WriteBufferSize(localBufferSize),
		grpc.MaxConcurrentStreams(fastpath.MaxStreams),
	}
}

func localDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithStaticStreamWindowSize(localStreamWindow),
		grpc.WithStaticConnWindowSize(localConnWindow),
		grpc.WithReadBufferSize(localBufferSize),
		grpc.WithWriteBufferSize(localBufferSize),
	}
}

// tuneSocket sets a Unix socket connection's kernel buffers.
func tuneSocket(c net.Conn) {
	if uc, ok := c.(*net.UnixConn); ok {
		uc.SetReadBuffer(localSocketBuffer)
		uc.SetWriteBuffer(localSocketBuffer)
	}
}
