//go:build unix

package grpcipc

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestErrorTextsUnix: Listen's errors for a socket path, and a client's,
// begin with "grpcipc: " once and name the endpoint; the status of a call
// that could not connect does too.
func TestErrorTextsUnix(t *testing.T) {
	ctx := context.Background()
	dir := testutil.ShortTempDir(t)

	unsafe := filepath.Join(dir, "unsafe")
	if err := os.Mkdir(unsafe, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(unsafe, 0o777)
	ep := "unix://" + unsafe + "/s.sock"
	_, err := Listen(ctx, ep)
	wantText(t, "Listen, unsafe directory", err, "listen "+ep+": unsafe socket directory: ")
	if !errors.Is(err, ErrUnsafeDirectory) {
		t.Errorf("Listen, unsafe directory: %v does not wrap ErrUnsafeDirectory", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Listen(ctx, "unix://"+file)
	wantText(t, "Listen, a file", err, "listen unix://"+file+": path exists and is not a socket")
	if !errors.Is(err, ErrNotSocket) {
		t.Errorf("Listen, a file: %v does not wrap ErrNotSocket", err)
	}

	live := "unix://" + filepath.Join(dir, "live.sock")
	l, err := Listen(ctx, live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, err = Listen(ctx, live)
	wantText(t, "Listen, in use", err, "listen "+live+": address already in use")
	if !errors.Is(err, ErrAddressInUse) {
		t.Errorf("Listen, in use: %v does not wrap ErrAddressInUse", err)
	}

	if runtime.GOOS == "linux" {
		abstract := "unix-abstract:" + testutil.AbstractName(t)
		_, err = Listen(ctx, abstract, WithSocketMode(0o600))
		wantText(t, "Listen, abstract with a mode", err, "listen "+abstract+": a socket file mode applies only to unix socket paths")
	}

	missing := "unix://" + filepath.Join(dir, "missing.sock")
	_, err = Dial(ctx, missing)
	wantText(t, "Dial", err, "connecting to "+missing+": ")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Dial: %v does not wrap fs.ErrNotExist", err)
	}
	for _, opts := range [][]ClientOption{nil, {WithHTTP2()}} {
		cc, err := NewClient(missing, opts...)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = cc.Invoke(cctx, "/x.Y/Z", nil, nil)
		cancel()
		cc.Close()
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.Unavailable || strings.Count(msg, "grpcipc: ") != 1 || !strings.Contains(msg, "grpcipc: connecting to "+missing+": ") {
			t.Errorf("a call to %s (%d options): %v; want Unavailable, \"grpcipc: connecting to %s: \" once", missing, len(opts), err, missing)
		}
	}
}
