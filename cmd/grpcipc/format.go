package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

func formatName(text bool) string {
	if text {
		return "the text format"
	}
	return "JSON"
}

// requestReader returns the requests src holds one by one, then io.EOF:
// JSON values as they come, or text-format messages separated by the
// ASCII record separator (0x1e), as grpcurl takes them.
func requestReader(src io.Reader, text bool) func() ([]byte, error) {
	if !text {
		dec := json.NewDecoder(src)
		return func() ([]byte, error) {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			return raw, err
		}
	}
	// As grpcurl: every piece between separators is a message, an empty
	// one too, so no input at all is one empty message.
	br := bufio.NewReader(src)
	done := false
	return func() ([]byte, error) {
		if done {
			return nil, io.EOF
		}
		b, err := br.ReadBytes(0x1e)
		switch {
		case err == nil:
			return b[:len(b)-1], nil
		case errors.Is(err, io.EOF):
			done = true
			return b, nil
		}
		return nil, err
	}
}

// unmarshalRequest reads one request in JSON or the text format;
// discardUnknown ignores fields the message does not have.
func unmarshalRequest(b []byte, m proto.Message, text, discardUnknown bool, types typeResolver) error {
	if text {
		return prototext.UnmarshalOptions{Resolver: types, DiscardUnknown: discardUnknown}.Unmarshal(b, m)
	}
	return protojson.UnmarshalOptions{Resolver: types, DiscardUnknown: discardUnknown}.Unmarshal(b, m)
}

// marshalRequest writes a request back in the format requestReader reads.
func marshalRequest(m proto.Message, text bool) ([]byte, error) {
	if text {
		return prototext.Marshal(m)
	}
	return protojson.Marshal(m)
}

// textColon is a field name's colon and the spaces after it, at the
// start of a line of multi-line text format (where a value never starts a
// line: strings are quoted and escaped).
var textColon = regexp.MustCompile(`(?m)^(\s*[^\s:"]+): +`)

// replyPrinter prints replies as indented JSON, or in the text format, one
// after another.
type replyPrinter struct {
	w              io.Writer
	opts           protojson.MarshalOptions
	text           bool
	discardUnknown bool // of requests: --allow-unknown-fields
	printed        int
}

func (p *replyPrinter) print(m proto.Message) error {
	if p.text {
		out, err := prototext.MarshalOptions{Multiline: true, Indent: "  ", Resolver: p.opts.Resolver}.Marshal(m)
		if err != nil {
			return fmt.Errorf("formatting the reply: %w", err)
		}
		// prototext puts one or two spaces after a field name's colon, at
		// random, so that no one relies on its output; grpcurl's is one.
		out = textColon.ReplaceAll(out, []byte("$1: "))
		if p.printed > 0 {
			fmt.Fprint(p.w, "\x1e") // between messages, as grpcurl's text format
		}
		p.printed++
		_, err = fmt.Fprintf(p.w, "%s\n", bytes.TrimRight(out, "\n"))
		return err
	}
	out, err := p.opts.Marshal(m)
	var indented bytes.Buffer
	if err == nil {
		// protojson varies its spacing on purpose; print it the same way
		// every time.
		err = json.Indent(&indented, out, "", "  ")
	}
	if err != nil {
		return fmt.Errorf("formatting the reply: %w", err)
	}
	_, err = fmt.Fprintf(p.w, "%s\n", indented.Bytes())
	return err
}
