package fastpath

// The client's side of descriptors with a call (files.go).

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/grpcipc/grpcipc/internal/fastio"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FilesOption is grpcipc.WithFiles: files to send with a call. It is a
// grpc.PerRPCCredsCallOption's credentials, so that grpc-go's HTTP/2
// transport, which cannot carry them, fails the call (GetRequestMetadata)
// rather than send it without them.
type FilesOption struct{ Files []*os.File }

// GetRequestMetadata fails the call: only the fast path carries files.
func (*FilesOption) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return nil, status.Error(codes.Unimplemented, "grpcipc: the call carries files (grpcipc.WithFiles), which travel only on grpcipc's fast path over a Unix socket; this connection speaks HTTP/2, so the call was not sent")
}

// RequireTransportSecurity: files need none, and TLS cannot carry them.
func (*FilesOption) RequireTransportSecurity() bool { return false }

// ReceiveFilesOption is grpcipc.ReceiveFiles: where the files the server
// sends with its response go.
type ReceiveFilesOption struct {
	grpc.EmptyCallOption
	Dst *[]*os.File
}

// filesConnOf returns what carries descriptors under c (c itself, or a
// connection it wraps, as NetConn says, as crypto/tls's does), and the
// net.Conn that is; nil if nothing does.
func filesConnOf(c net.Conn) (FilesConn, net.Conn) {
	for c != nil {
		if fc, ok := c.(FilesConn); ok && fastio.CanCarryFiles(c) {
			return fc, c
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, nil
		}
		c = u.NetConn()
	}
	return nil, nil
}

// startFiles makes the connection keep the descriptors the server sends,
// if it can carry them (at version 3 or later).
func (fc *ClientConn) startFiles() {
	if fc.version < wire.FilesVersion {
		return
	}
	f, raw := filesConnOf(fc.conn)
	if f == nil {
		return
	}
	f.KeepFiles()
	fc.files = f
	fc.filesBase = f.Offset() - uint64(fc.br.Buffered())
	fc.w.Files = raw
}

// filesToSend returns duplicates of files to send with a call, or why
// they cannot go.
func (fc *ClientConn) filesToSend(files []*os.File) ([]int, error) {
	if fc.files == nil {
		why := "this connection is not a Unix socket"
		if fc.version < wire.FilesVersion {
			why = "the server speaks version " + strconv.Itoa(int(fc.version)) + " of the fast path, which carries none (version 3 does)"
		}
		return nil, status.Errorf(codes.FailedPrecondition, "grpcipc: the call carries files (grpcipc.WithFiles), and %s: the call was not sent", why)
	}
	if len(files) > wire.MaxFilesPerFrame {
		return nil, status.Errorf(codes.InvalidArgument, "grpcipc: the call carries %d files, more than the %d a call can", len(files), wire.MaxFilesPerFrame)
	}
	dups, err := fastio.DupFiles(files)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "grpcipc: the call's files (grpcipc.WithFiles): %v", err)
	}
	return dups, nil
}

// onFiles reads a FILES frame: descriptors the server sends with a call.
func (fc *ClientConn) onFiles(h wire.Header, p []byte) error {
	if fc.files == nil {
		return fmt.Errorf("%w: a FILES frame on a connection that carries no descriptors", wire.ErrProtocol)
	}
	n, err := wire.ParseFiles(p)
	if err != nil {
		return err
	}
	fds, err := fc.files.TakeFiles(fc.filesBase+fc.r.FrameStart(), n)
	if err != nil {
		return fmt.Errorf("%w: %w", wire.ErrProtocol, err)
	}
	st := fc.stream(h.Stream)
	if st == nil {
		closeFDs(fds) // the call ended: nobody takes them
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case !st.wantFiles:
		closeFDs(fds)
		return fmt.Errorf("%w: the server sent files with a call that takes none", wire.ErrProtocol)
	case len(st.files)+n > wire.MaxFilesPerFrame:
		closeFDs(fds)
		return fmt.Errorf("%w: the server sent more than %d files with a call", wire.ErrProtocol, wire.MaxFilesPerFrame)
	case st.filesDone:
		closeFDs(fds)
		return nil
	}
	for _, fd := range fds {
		st.files = append(st.files, os.NewFile(uintptr(fd), "grpcipc-received-"+strconv.Itoa(len(st.files))))
	}
	return nil
}

// strayFiles fails if descriptors came with the bytes read so far and no
// FILES frame took them.
func (fc *ClientConn) strayFiles() error {
	if fc.files == nil {
		return nil
	}
	if err := fc.files.Stray(fc.filesBase + fc.r.Offset()); err != nil {
		return fmt.Errorf("%w: %w", wire.ErrProtocol, err)
	}
	return nil
}

// handFiles hands the files the server sent to *dst (appended), once.
func (st *clientStream) handFiles(dst *[]*os.File) {
	st.mu.Lock()
	files := st.files
	st.files, st.filesDone = nil, true
	st.mu.Unlock()
	if dst != nil {
		*dst = append(*dst, files...)
	}
}
