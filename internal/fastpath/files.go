package fastpath

// Descriptors with a call (docs/protocol.md, "Files").
//
// A sender attaches descriptors (SCM_RIGHTS) to a FILES frame that it
// writes alone, on the stream of the call they go with: a client before
// the call's CALL frame, a server before its trailers. The receiving
// connection (rights.Conn) keeps what arrives with the place in the
// stream where it arrived; the reader takes them when it reads the frame
// that announces them, and the connection ends when descriptors arrive
// where no frame announces them, or not as many as announced. A server
// holds a call's descriptors until its handler takes them (TakeFiles) or
// the call ends, when it closes them; the call is refused, with the files
// closed, when the server takes no files or the call has more than it
// takes, before its handler runs.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/grpcipc/grpcipc/internal/fastio"
	"github.com/grpcipc/grpcipc/internal/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FilesConn is a connection that carries descriptors with its bytes
// (rights.Conn on a Unix socket).
type FilesConn interface {
	// KeepFiles keeps the descriptors that arrive from now on.
	KeepFiles()
	// Offset returns how many bytes were read from the connection.
	Offset() uint64
	// TakeFiles returns the n descriptors that came with the byte at
	// offset at; its error ends the connection.
	TakeFiles(at uint64, n int) ([]int, error)
	// Stray fails if descriptors came with bytes before offset upTo that
	// nobody took.
	Stray(upTo uint64) error
}

// filesPerConn and filesPerCaller: how many descriptors, in multiples of
// the most a call may carry, the calls of one connection, and those of
// one caller's connections together, may hold at once (received, not yet
// taken by their handlers).
const (
	filesPerConn   = 4
	filesPerCaller = 16
)

// startFiles makes the connection keep the descriptors that arrive with
// its bytes, if it can carry them; rest: the bytes read from conn past
// the offer, which the frame reader reads first.
func (c *serverConn) startFiles(rest []byte) {
	if c.version < wire.FilesVersion {
		return
	}
	fc, raw := filesConnOf(c.conn)
	if fc == nil {
		return
	}
	fc.KeepFiles()
	c.files = fc
	c.w.Files = raw
	c.filesBase = fc.Offset() - uint64(len(rest))
	if c.key != "" && c.s.cfg.MaxFilesPerCall > 0 {
		c.callerFiles = c.s.callerFileShare(c.key)
	}
}

// endFiles closes the descriptors of a FILES frame whose CALL never came,
// and gives back the connection's share of the caller's (at its end).
func (c *serverConn) endFiles() {
	c.dropPending(c.pending)
	c.pending = nil
	if c.callerFiles != nil {
		c.s.releaseFileShare(c.key)
	}
}

// onFiles reads a FILES frame: the descriptors for the call about to open
// on its stream.
func (c *serverConn) onFiles(h wire.Header, p []byte) error {
	if c.files == nil {
		return fmt.Errorf("%w: a FILES frame on a connection that carries no descriptors", wire.ErrProtocol)
	}
	n, err := wire.ParseFiles(p)
	if err != nil {
		return err
	}
	fds, err := c.files.TakeFiles(c.filesBase+c.r.FrameStart(), n)
	if err != nil {
		return fmt.Errorf("%w: %w", wire.ErrProtocol, err)
	}
	c.mu.Lock()
	seen := c.seen
	c.mu.Unlock()
	if h.Stream <= seen || c.pending != nil {
		closeFDs(fds)
		return fmt.Errorf("%w: a FILES frame on stream %d, which is not the next call's", wire.ErrProtocol, h.Stream)
	}
	// The descriptors count against the shares from now on, not from
	// their CALL, which a caller need never send: those the server would
	// refuse are closed at once, the CALL refused when it comes.
	pf := &pendingFiles{id: h.Stream, n: n}
	if n <= c.s.cfg.MaxFilesPerCall && c.holdFiles(n) {
		pf.fds, pf.held = fds, true
	} else {
		closeFDs(fds)
	}
	c.pending = pf
	return nil
}

// pendingFiles is what a FILES frame announced for the call that opens
// next, on stream id: n descriptors, held (counted in the connection's
// and the caller's shares) unless the server refuses them, in which
// case they are closed already (fds nil).
type pendingFiles struct {
	id   uint32
	n    int
	fds  []int
	held bool
}

// dropPending closes pf's descriptors and gives back their shares.
func (c *serverConn) dropPending(pf *pendingFiles) {
	if pf == nil {
		return
	}
	closeFDs(pf.fds)
	if pf.held {
		c.releaseFiles(pf.n)
	}
	*pf = pendingFiles{}
}

// strayFiles ends the connection if descriptors came with the bytes read
// so far and no FILES frame took them.
func (c *serverConn) strayFiles() error {
	if c.files == nil {
		return nil
	}
	if err := c.files.Stray(c.filesBase + c.r.Offset()); err != nil {
		return fmt.Errorf("%w: %w", wire.ErrProtocol, err)
	}
	return nil
}

// pendingFor returns what a FILES frame sent for the call opening on
// stream id (nil: none); a FILES frame for another stream is an error.
func (c *serverConn) pendingFor(id uint32) (*pendingFiles, error) {
	pf := c.pending
	if pf == nil {
		return nil, nil
	}
	c.pending = nil
	if pf.id != id {
		err := fmt.Errorf("%w: a FILES frame for stream %d, then a CALL on stream %d", wire.ErrProtocol, pf.id, id)
		c.dropPending(pf)
		return nil, err
	}
	return pf, nil
}

// attachFiles gives call st the descriptors pf it came with, if the
// server takes them; else it refuses the call, and closes them. It takes
// pf over, and says whether the call goes on.
func (c *serverConn) attachFiles(st *serverStream, pf *pendingFiles) bool {
	n, fds, held := pf.n, pf.fds, pf.held
	*pf = pendingFiles{}
	max := c.s.cfg.MaxFilesPerCall
	fail := func(code codes.Code, format string, args ...any) bool {
		closeFDs(fds)
		if held {
			c.releaseFiles(n)
		}
		st.fail(status.Errorf(code, format, args...))
		return false
	}
	switch {
	case max == 0:
		return fail(codes.FailedPrecondition, "grpcipc: call refused: it carries %s, and this server takes none (grpcipc.WithMaxFilesPerCall)", filesN(n))
	case n > max:
		return fail(codes.FailedPrecondition, "grpcipc: call refused: it carries %s, and this server takes at most %d a call (grpcipc.WithMaxFilesPerCall)", filesN(n), max)
	case !held && c.callerFiles == nil:
		return fail(codes.ResourceExhausted, "grpcipc: call refused: it carries %s, and the calls in flight on this connection hold %d already, at most %d", filesN(n), c.filesHeld.Load(), filesPerConn*max)
	case !held:
		return fail(codes.ResourceExhausted, "grpcipc: call refused: it carries %s, and this caller's calls in flight hold %d on this connection and %d on all its connections already, at most %d on a connection and %d on all", filesN(n), c.filesHeld.Load(), c.callerFiles.held.Load(), filesPerConn*max, filesPerCaller*max)
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "grpcipc-received-"+strconv.Itoa(i))
	}
	st.fileMu.Lock()
	st.files = files
	st.fileMu.Unlock()
	return true
}

// holdFiles counts n descriptors against the connection's and the
// caller's shares, if they have room.
func (c *serverConn) holdFiles(n int) bool {
	max := int64(c.s.cfg.MaxFilesPerCall)
	if c.filesHeld.Add(int64(n)) > filesPerConn*max {
		c.filesHeld.Add(-int64(n))
		return false
	}
	if c.callerFiles == nil {
		return true
	}
	if c.callerFiles.held.Add(int64(n)) > filesPerCaller*max {
		c.callerFiles.held.Add(-int64(n))
		c.filesHeld.Add(-int64(n))
		return false
	}
	return true
}

// fileShare counts the descriptors that the calls of one caller's
// connections hold.
type fileShare struct {
	conns int // connections sharing it (Server.mu)
	held  atomic.Int64
}

// callerFileShare returns the share of descriptors of a caller's
// connections, counting one more connection on it.
func (s *Server) callerFileShare(key string) *fileShare {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fileShares == nil {
		s.fileShares = map[string]*fileShare{}
	}
	f := s.fileShares[key]
	if f == nil {
		f = &fileShare{}
		s.fileShares[key] = f
	}
	f.conns++
	return f
}

// releaseFileShare counts one connection less on a caller's share.
func (s *Server) releaseFileShare(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.fileShares[key]; f != nil {
		if f.conns--; f.conns == 0 {
			delete(s.fileShares, key)
		}
	}
}

// releaseFiles gives back n descriptors of the connection's and the
// caller's shares.
func (c *serverConn) releaseFiles(n int) {
	if n == 0 {
		return
	}
	c.filesHeld.Add(-int64(n))
	if c.callerFiles != nil {
		c.callerFiles.held.Add(-int64(n))
	}
}

// takeFiles hands the call's descriptors to its handler.
func (st *serverStream) takeFiles() []*os.File {
	st.fileMu.Lock()
	files := st.files
	st.files = nil
	st.fileMu.Unlock()
	st.c.releaseFiles(len(files))
	return files
}

// closeFiles closes the descriptors the handler did not take.
func (st *serverStream) closeFiles() {
	files := st.takeFiles()
	if len(files) == 0 {
		return
	}
	// Off this goroutine: closing one can block (a socket with SO_LINGER).
	go func() {
		for _, f := range files {
			f.Close()
		}
	}()
}

// closeFDs closes descriptors that another process sent, off this
// goroutine (closing one can block).
func closeFDs(fds []int) {
	if len(fds) == 0 {
		return
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "")
	}
	go func() {
		for _, f := range files {
			f.Close()
		}
	}()
}

// filesN is "1 file" or "n files".
func filesN(n int) string {
	if n == 1 {
		return "1 file"
	}
	return strconv.Itoa(n) + " files"
}

// ErrNoFiles is wrapped by SendFiles' error when the call cannot carry
// files.
var ErrNoFiles = errors.New("this call cannot carry files")

// SendFiles sends files to the client with the response of the call whose
// handler has ctx, at once: the caller keeps its own (the client gets
// duplicates). It fails, wrapping ErrNoFiles, when the call did not come
// over the fast path on a Unix socket, or its client takes no files.
func SendFiles(ctx context.Context, files ...*os.File) error {
	if len(files) == 0 {
		return nil
	}
	st := streamOf(ctx)
	if st == nil {
		return fmt.Errorf("%w: it did not come over grpcipc's fast path (HTTP/2 carries no files)", ErrNoFiles)
	}
	c := st.c
	if c.files == nil {
		return fmt.Errorf("%w: its connection is not a Unix socket, or its client speaks a version of the fast path without files", ErrNoFiles)
	}
	if !st.takesFiles {
		return fmt.Errorf("%w: its client did not ask for files (grpcipc.ReceiveFiles)", ErrNoFiles)
	}
	dups, err := fastio.DupFiles(files)
	if err != nil {
		return fmt.Errorf("sending files: %w", err)
	}
	st.hmu.Lock()
	defer st.hmu.Unlock()
	switch {
	case st.finished:
		closeFDs(dups)
		return fmt.Errorf("%w: the call has ended", ErrNoFiles)
	case st.sentFiles+len(dups) > wire.MaxFilesPerFrame:
		closeFDs(dups)
		return fmt.Errorf("%w: %d files, and a call carries at most %d", ErrNoFiles, st.sentFiles+len(dups), wire.MaxFilesPerFrame)
	}
	b := c.w.Lock()
	at := len(*b)
	*b = wire.AppendHeader(*b, wire.Header{Length: wire.FilesSize, Stream: st.id, Type: wire.TypeFiles})
	*b = wire.AppendFiles(*b, len(dups))
	c.w.AttachFiles(at, dups)
	if err := c.w.Unlock(); err != nil {
		return fmt.Errorf("sending files: %w", err)
	}
	st.sentFiles += len(dups)
	return nil
}

// TakeFiles returns the files that the client sent with the call whose
// handler has ctx, and hands them over: the caller owns them from now on.
// It returns nil if there are none, or the call is not a fast-path call.
func TakeFiles(ctx context.Context) []*os.File {
	st := streamOf(ctx)
	if st == nil {
		return nil
	}
	return st.takeFiles()
}

// streamOf returns the fast-path call whose handler has ctx, or nil.
func streamOf(ctx context.Context) *serverStream {
	t, ok := grpc.ServerTransportStreamFromContext(ctx).(*transportStream)
	if !ok {
		return nil
	}
	return t.st
}
