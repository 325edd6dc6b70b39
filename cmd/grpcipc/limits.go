package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// The most grpcipc reads of a file it takes whole: more than any real one
// holds, and a bound on what a wrong path (/dev/zero, a disk image) costs.
const (
	maxDescriptorFile = 64 << 20 // a --protoset, a --proto source and each file it imports
	maxSmallFile      = 16 << 20 // a PEM file (--cacert, --cert, --key, --client-ca), a --policy file
)

// errTooLarge is readFileCapped's error for a file over its cap.
var errTooLarge = errors.New("too large")

// tooLargeError is readCapped's error for a file over its cap: one line
// that names the file and the cap.
type tooLargeError struct {
	file  string // with the flag that named it
	limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than %d MiB, the most grpcipc reads of such a file", e.file, e.limit>>20)
}

// readCapped reads the file name whole, as the flag what names it ("" when
// the caller names the flag), if it holds at most limit bytes, and within
// ctx: a file over the limit (or a device that never ends) is a
// *tooLargeError, read no further than the cap; one that is not read in
// time (a FIFO no one writes) is an error that wraps ctx's.
func readCapped(ctx context.Context, what, name string, limit int64) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Left behind when ctx ends first: it stops at the cap, and the
		// command is returning anyway.
		b, err := readFileCapped(name, limit)
		done <- result{b, err}
	}()
	file := name
	if what != "" {
		file = what + " " + name
	}
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: not read in time: %w", file, ctx.Err())
	}
	switch {
	case errors.Is(r.err, errTooLarge):
		return nil, &tooLargeError{file: file, limit: limit}
	case r.err != nil && what != "":
		return nil, fmt.Errorf("%s: %w", what, r.err) // the os package's error names the file
	case r.err != nil:
		return nil, r.err
	}
	return r.b, nil
}

// readFileCapped reads the file name if it holds at most limit bytes: a
// regular file's size says so before anything is read; anything else (a
// FIFO, a device) is read in chunks, up to one byte past the limit, and
// joined only when it is within it, so that what it holds at most is
// about the limit.
func readFileCapped(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		if fi.Size() > limit {
			return nil, errTooLarge
		}
		b := make([]byte, 0, fi.Size()+512) // room for it all: no copies as it grows
		for {
			n, err := f.Read(b[len(b):cap(b)])
			b = b[:len(b)+n]
			switch {
			case int64(len(b)) > limit:
				return nil, errTooLarge // it grew meanwhile
			case errors.Is(err, io.EOF):
				return b, nil
			case err != nil:
				return nil, err
			case len(b) == cap(b):
				b = append(b, 0)[:len(b)]
			}
		}
	}
	r := io.LimitReader(f, limit+1)
	var chunks [][]byte
	total := int64(0)
	for {
		chunk := make([]byte, 1<<20)
		n, err := io.ReadFull(r, chunk)
		chunks = append(chunks, chunk[:n])
		total += int64(n)
		switch {
		case total > limit:
			return nil, errTooLarge
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return bytes.Join(chunks, nil), nil
		case err != nil:
			return nil, err
		}
	}
}

// deadlineReader reads r (standard input) until ctx ends: then Read fails
// with an error that wraps ctx's at once, although a read of r cannot be
// interrupted (the one in progress is left to the goroutine that makes it,
// and the command is returning anyway). It reads nothing before the first
// Read, and no more than one chunk ahead of its reader.
type deadlineReader struct {
	ctx   context.Context
	r     io.Reader
	start sync.Once
	next  chan chunk // from the goroutine that reads r
	ask   chan struct{}
	left  []byte // what the last chunk still holds
	err   error  // r's, once it has been reached
}

type chunk struct {
	b   []byte
	err error
}

func newDeadlineReader(ctx context.Context, r io.Reader) *deadlineReader {
	return &deadlineReader{ctx: ctx, r: r, next: make(chan chunk, 1), ask: make(chan struct{}, 1)}
}

// errStdinOpen is wrapped, with ctx's error, by the error of a read of
// standard input that ctx ended.
var errStdinOpen = errors.New("standard input was still open")

func (d *deadlineReader) Read(p []byte) (int, error) {
	d.start.Do(func() { go d.pump() })
	for len(d.left) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		select {
		case d.ask <- struct{}{}:
		default: // asked already, not yet answered
		}
		select {
		case c := <-d.next:
			d.left, d.err = c.b, c.err
		case <-d.ctx.Done():
			return 0, fmt.Errorf("%w: %w", errStdinOpen, d.ctx.Err())
		}
	}
	n := copy(p, d.left)
	d.left = d.left[n:]
	return n, nil
}

// pump reads a chunk of r each time it is asked, until r fails or ends or
// ctx ends.
func (d *deadlineReader) pump() {
	for {
		select {
		case <-d.ask:
		case <-d.ctx.Done():
			return
		}
		buf := make([]byte, 32<<10)
		n, err := d.r.Read(buf)
		d.next <- chunk{buf[:n], err} // room for one: the reader asked for it
		if err != nil {
			return
		}
	}
}
