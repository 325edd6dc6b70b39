package grpcipc

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"unicode/utf8"
)

// maxChildLine bounds a line of a child's output that WithChildOutput
// logs as one record: a longer one is logged in parts.
const maxChildLine = 64 << 10

// lineLogger is a child's standard output or error ([WithChildOutput]):
// os/exec copies the child's pipe into Write from one goroutine, and the
// watcher calls flush once cmd.Wait has returned (the copying done).
type lineLogger struct {
	logger *slog.Logger
	cmd    *exec.Cmd // started before the first Write: Process is set
	stream string    // "stdout" or "stderr"
	buf    []byte    // the line so far, at most maxChildLine bytes
}

// Write logs each line p completes, and keeps the rest for the next.
func (l *lineLogger) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := maxChildLine - len(l.buf)
		if i := bytes.IndexByte(p, '\n'); i >= 0 && i <= room {
			l.buf = append(l.buf, p[:i]...)
			p = p[i+1:]
			l.log(bytes.TrimSuffix(l.buf, []byte{'\r'}), false)
			l.buf = l.buf[:0]
			continue
		}
		take := min(room, len(p))
		l.buf = append(l.buf, p[:take]...)
		p = p[take:]
		if len(l.buf) == maxChildLine {
			l.logPart()
		}
	}
	return n, nil
}

// logPart logs the full buffer as a part of a longer line, up to the
// last whole UTF-8 character, and keeps the bytes of a character cut in
// two for the next part.
func (l *lineLogger) logPart() {
	cut := len(l.buf)
	for i := len(l.buf) - 1; i >= 0 && i >= len(l.buf)-utf8.UTFMax; i-- {
		if utf8.RuneStart(l.buf[i]) {
			if !utf8.FullRune(l.buf[i:]) {
				cut = i
			}
			break
		}
	}
	if cut == 0 {
		cut = len(l.buf)
	}
	l.log(l.buf[:cut], true)
	l.buf = l.buf[:copy(l.buf, l.buf[cut:])]
}

// flush logs the last line, which had no newline.
func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.log(l.buf, false)
		l.buf = l.buf[:0]
	}
}

func (l *lineLogger) log(line []byte, partial bool) {
	attrs := []slog.Attr{slog.Int("pid", l.cmd.Process.Pid), slog.String("stream", l.stream)}
	if partial {
		attrs = append(attrs, slog.Bool("partial", true))
	}
	l.logger.LogAttrs(context.Background(), slog.LevelInfo, string(line), attrs...)
}
