package winpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/Microsoft/go-winio"
	"github.com/grpcipc/grpcipc/internal/sockfile"
	"golang.org/x/sys/windows"
)

// ClientAccess is what grpcipc's clients open a pipe with: read and
// write data and attributes. Not GENERIC_WRITE, whose FILE_APPEND_DATA is,
// on a pipe, FILE_CREATE_PIPE_INSTANCE: the right to serve the name.
const ClientAccess = windows.FILE_READ_DATA | windows.FILE_WRITE_DATA |
	windows.FILE_READ_ATTRIBUTES | windows.FILE_WRITE_ATTRIBUTES | windows.SYNCHRONIZE

// pipeBuffer is the size of a pipe instance's buffers, each way.
const pipeBuffer = 64 << 10

// Listen serves the pipe path (\\.\pipe\NAME) with the security
// descriptor sddl. go-winio creates the first instance with FILE_CREATE, so
// that a name another process already holds is refused rather than shared
// (no squatting), and every instance with FILE_PIPE_REJECT_REMOTE_CLIENTS.
// A taken name is an error wrapping [sockfile.ErrAddressInUse].
func Listen(path, sddl string) (net.Listener, error) {
	// FILE_CREATE refuses a taken name on Windows; Wine shares it instead,
	// so look first: a pipe that answers, is busy or refuses us exists.
	if err := probe(path); err != nil {
		return nil, err
	}
	// Buffers of pipeBuffer each way: a peer's write completes once
	// buffered, not only when the other side has read it all (Wine 8, given
	// go-winio's default of 0, completes a write only then: a client's
	// 26-byte offer, of which the server reads 8 before it answers, waited
	// for a reader that waited for it).
	l, err := winio.ListenPipe(path, &winio.PipeConfig{SecurityDescriptor: sddl, InputBufferSize: pipeBuffer, OutputBufferSize: pipeBuffer})
	if err != nil {
		if errors.Is(err, windows.ERROR_ALREADY_EXISTS) || errors.Is(err, windows.ERROR_ACCESS_DENIED) ||
			errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, &sockfile.InUseError{Detail: "another process holds that pipe name", Cause: err}
		}
		return nil, err
	}
	if UnderWine() {
		// Wine hands the first client the idle first instance go-winio
		// keeps to hold the name, where it hangs: use it up here.
		if c, err := winio.DialPipeAccessImpLevel(context.Background(), path, ClientAccess, winio.PipeImpLevelAnonymous); err == nil {
			c.Close()
		}
	}
	return l, nil
}

// probe fails with [sockfile.ErrAddressInUse] if a pipe of that path exists.
func probe(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c, err := winio.DialPipeAccessImpLevel(ctx, path, ClientAccess, winio.PipeImpLevelAnonymous)
	switch {
	case err == nil:
		c.Close()
		return &sockfile.InUseError{Detail: "a server is accepting connections on that pipe"}
	case errors.Is(err, context.DeadlineExceeded):
		return &sockfile.InUseError{Detail: "a server holds that pipe name, all its instances busy"}
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		return &sockfile.InUseError{Detail: "a pipe of that name exists and does not admit this user", Cause: err}
	case errors.Is(err, windows.ERROR_FILE_NOT_FOUND), errors.Is(err, windows.ERROR_PATH_NOT_FOUND):
		return nil
	}
	return fmt.Errorf("cannot tell whether the pipe name is taken: %w", err)
}

// Dial connects to the pipe path at the Anonymous impersonation level unless identify
// asks for Identification: the server can then learn who the client is
// (it does anyway, from the client's process token) but never act as it.
func Dial(ctx context.Context, path string, identify bool) (net.Conn, error) {
	level := winio.PipeImpLevelAnonymous
	if identify {
		level = winio.PipeImpLevelIdentification
	}
	c, err := winio.DialPipeAccessImpLevel(ctx, path, ClientAccess, level)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "npipe", Addr: Addr(path), Err: err}
	}
	return c, nil
}

// Addr is a pipe's address.
type Addr string

// Network returns "npipe".
func (a Addr) Network() string { return "npipe" }
func (a Addr) String() string  { return string(a) }

var (
	wineOnce sync.Once
	isWine   bool
)

// UnderWine reports whether this process runs under Wine, whose ntdll
// exports wine_get_version.
func UnderWine() bool {
	wineOnce.Do(func() {
		isWine = windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
	})
	return isWine
}
