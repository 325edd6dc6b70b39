package children

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"go.uber.org/goleak"
)

// recordingHandler keeps the records a slog.Logger gives it.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }

func (h *recordingHandler) WithGroup(string) slog.Handler { return h }

// outputLine is a record of WithChildOutput.
type outputLine struct {
	msg, stream string
	pid         int64
	partial     bool
}

func (h *recordingHandler) lines() []outputLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []outputLine
	for _, r := range h.records {
		l := outputLine{msg: r.Message}
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "pid":
				l.pid = a.Value.Int64()
			case "stream":
				l.stream = a.Value.String()
			case "partial":
				l.partial = a.Value.Bool()
			}
			return true
		})
		out = append(out, l)
	}
	return out
}

// TestChildOutput: WithChildOutput logs the child's standard output and
// error line by line with its PID, a line over 64 KiB in parts (whole
// characters each), and the last line without a newline, which the child
// writes as it exits, before Close returns; nothing is left running.
func TestChildOutput(t *testing.T) {
	opts := append(slices.Clone(testutil.LeakOptions), goleak.IgnoreCurrent())
	defer goleak.VerifyNone(t, opts...)
	h := &recordingHandler{}
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child-writes")
	cmd.Stderr = nil
	child, err := grpcipc.StartChild(context.Background(), cmd, grpcipc.WithChildOutput(slog.New(h)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identitypb.NewIdentityClient(child.Conn()).WhoAmI(context.Background(), &identitypb.WhoAmIRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := child.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var stdout, stderr []string
	var long strings.Builder
	for _, l := range h.lines() {
		if l.pid != int64(child.PID()) {
			t.Errorf("a line logged with pid %d; the child is %d", l.pid, child.PID())
		}
		if !utf8.ValidString(l.msg) {
			t.Errorf("a line cut inside a character: ...%q", l.msg[len(l.msg)-4:])
		}
		switch {
		case l.stream == "stdout" && (l.partial || long.Len() > 0):
			long.WriteString(l.msg)
			if !l.partial {
				stdout = append(stdout, long.String())
				long.Reset()
			} else if len(l.msg) > 64<<10 {
				t.Errorf("a part of %d bytes; want at most 64 KiB", len(l.msg))
			}
		case l.stream == "stdout":
			stdout = append(stdout, l.msg)
		case l.stream == "stderr":
			stderr = append(stderr, l.msg)
		default:
			t.Errorf("a line logged from stream %q", l.stream)
		}
	}
	if want := []string{"one", "two", childLongLine, "three"}; !slices.Equal(stdout, want) {
		t.Errorf("stdout logged as %d lines (%.40q...); want %d: one, two, the long line, three", len(stdout), stdout, len(want))
	}
	if want := []string{"on stderr"}; !slices.Equal(stderr, want) {
		t.Errorf("stderr logged as %q; want %q", stderr, want)
	}
	if parts := len(h.lines()); parts != 7 {
		t.Errorf("%d records; want 7 (the long line in 3 parts)", parts)
	}
}

// TestChildOutputConflicts: WithChildOutput with cmd.Stdout already set is
// an error, not output silently sent elsewhere.
func TestChildOutputConflicts(t *testing.T) {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "child")
	if _, err := grpcipc.StartChild(context.Background(), cmd, grpcipc.WithChildOutput(slog.Default())); err == nil || !strings.Contains(err.Error(), "cmd.Stderr is set") {
		t.Errorf("StartChild with cmd.Stderr set and WithChildOutput: %v; want an error", err)
	}
	if cmd.Process != nil {
		t.Error("the command was started")
	}
}
