package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // google.rpc details, printed by name

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

func runCall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("call", "[--connect ENDPOINT] [--timeout D] [--expect-server P]... [TLS flags] [-d JSON|@] [-H HEADER]... [-v] METHOD [JSON]",
		"Call METHOD (package.Service/Method) with the request written as JSON (default {}),\n"+
			"finding its types by server reflection (or in --proto or --protoset files), and print the\n"+
			"reply as JSON. A streaming method takes its requests as a sequence of JSON\n"+
			"messages (-d @ reads them from standard input as they come, as grpcurl does) and\n"+
			"prints each reply as it arrives. A failed call exits with 64 plus its gRPC code; a\n"+
			"failure before it (no server, reflection, no such method) with 1: grpcipc --help\n"+
			"lists the exit statuses.",
		1, 2, stdout)
	flags := addClientFlags(c.fs, true)
	verbose := c.fs.Bool("v", false, "print the response headers and trailers (on standard error: standard output stays the reply)")
	emitDefaults := c.fs.Bool("emit-defaults", false, "print fields that hold their default value (0, \"\", false) too")
	format := c.fs.String("format", "json", "the requests' and replies' `format`: json, or text (protobuf's text format; a\nstream's text messages are separated by the ASCII record separator, 0x1e, as with grpcurl)")
	var maxTime seconds
	c.fs.Var(&maxTime, "max-time", "give the whole command this long: connecting, reflection, reading the requests\n(-d @: standard input) and the call (`seconds`, as grpcurl's -max-time, or a\nduration such as 1m30s; default --timeout)")
	allowUnknown := c.fs.Bool("allow-unknown-fields", false, "ignore request fields the method's message does not have, rather than fail")
	formatError := c.fs.Bool("format-error", false, "print a failed call's status (code, message, details) to standard error in\n--format rather than as one line, as grpcurl's -format-error")
	data := c.fs.String("d", "", "the `request` as JSON, as with grpcurl; @ reads it from standard input (where other\nusers cannot read it, as they can a command line in /proc)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	svcName, methodName, err := splitMethod(pos[0])
	if err != nil {
		return err
	}
	if *format != "json" && *format != "text" {
		return usageErrorf("call: --format %q: want json or text", *format)
	}
	text := *format == "text"
	// --max-time bounds the whole command, reading standard input
	// included; --connect-timeout connecting and reflection within it
	// (grpcurl's two); --timeout is the default of both.
	limit := maxTime.or(*flags.timeout)
	ctx, cancelAll := context.WithTimeout(ctx, limit)
	defer cancelAll()
	// overdue says, when the command failed, whether --max-time is why.
	overdue := func(what string, err error) error {
		if !timedOut(ctx) {
			return err
		}
		ep, _ := endpointOrDefault(*flags.connect)
		return callError(fmt.Sprintf("call %s/%s on %s", svcName, methodName, ep), status.Errorf(codes.DeadlineExceeded, "--max-time (%v) passed %s", limit, what), nil)
	}
	var src io.Reader = strings.NewReader("") // no request: {} for a unary call, none for a client stream
	switch {
	case len(pos) == 2 && *data != "":
		return usageErrorf("call: give the request as -d or as an argument, not both")
	case len(pos) == 2:
		src = strings.NewReader(pos[1])
	case *data == "@":
		// Read as the call goes (a stream's messages as they come), until
		// --max-time passes.
		src = newDeadlineReader(ctx, io.LimitReader(stdin, maxRequestJSON))
	case *data != "":
		src = strings.NewReader(*data)
	}
	reqMD, err := flags.metadata(true)
	if err != nil {
		return err
	}
	connectLimit := flags.connectTimeout.or(*flags.timeout)
	connectCtx, cancel := context.WithTimeout(ctx, connectLimit)
	defer cancel()
	// A limit that passed while connecting is --connect-timeout's when it
	// is no longer than --max-time (its error names connecting).
	connectOverdue := func(err error) error {
		if connectLimit <= limit {
			return err
		}
		return overdue("while connecting and reflecting", err)
	}
	cl, err := connect(connectCtx, flags)
	if err != nil {
		return connectOverdue(err)
	}
	defer cl.Close()
	callCtx := ctx
	sd, err := cl.service(svcName)
	if err != nil {
		return connectOverdue(err)
	}
	md := sd.Methods().ByName(protoreflect.Name(methodName))
	if md == nil {
		var names []string
		for i := 0; i < sd.Methods().Len(); i++ {
			names = append(names, string(sd.Methods().Get(i).Name()))
		}
		return fmt.Errorf("service %s has no method %q (it has %s)", svcName, methodName, strings.Join(names, ", "))
	}
	// Types inside google.protobuf.Any are looked up on the server too.
	types := cl.types
	printer := &replyPrinter{w: stdout, opts: protojson.MarshalOptions{Resolver: types, EmitUnpopulated: *emitDefaults}, text: text, discardUnknown: *allowUnknown}
	failed := func(err error) error {
		if st, ok := status.FromError(err); ok && st.Code() == codes.Canceled && deadlinePassed(callCtx) {
			// The server saw the deadline first and ended the call
			// (grpc-go's health Watch says Canceled): the limit is why.
			err = status.Errorf(codes.DeadlineExceeded, "--max-time passed (the server said: %s)", st.Message())
		} else if errors.Is(err, errStdinOpen) && errors.Is(err, context.DeadlineExceeded) {
			// Standard input was still open when --max-time passed.
			err = status.Errorf(codes.DeadlineExceeded, "--max-time (%v) passed while reading requests from standard input", limit)
		}
		if nerr := notConnected(cl.ep, err); nerr != nil {
			// Connecting failed (with --proto or --protoset the call is
			// the first to connect): exit status 1, as when reflection
			// could not connect, and as grpcurl's.
			return nerr
		}
		cerr := callError(fmt.Sprintf("call %s/%s on %s", svcName, methodName, cl.ep), err, types)
		var ee *exitError
		if st, ok := status.FromError(err); ok && *formatError && errors.As(cerr, &ee) {
			ep := *printer
			ep.w, ep.printed = stderr, 0
			if ep.print(st.Proto()) == nil {
				ee.quiet = true // as grpcurl: the status, formatted, is the error message
			}
		}
		return cerr
	}
	callOpts := flags.callOptions()
	full := "/" + svcName + "/" + methodName
	next := requestReader(src, text)
	if !md.IsStreamingClient() {
		// One request, as grpcurl takes it: none given is an empty one,
		// more than one is a mistake.
		req, err := oneRequest(next, md, text, *allowUnknown, types)
		if errors.Is(err, errStdinOpen) {
			return failed(err)
		}
		if err != nil {
			return err
		}
		if !md.IsStreamingServer() {
			reply := dynamicpb.NewMessage(md.Output())
			var header, trailer metadata.MD
			err = cl.conn.Invoke(metadata.NewOutgoingContext(callCtx, reqMD), full, req, reply, append(callOpts, grpc.Header(&header), grpc.Trailer(&trailer))...)
			if *verbose {
				printMetadata(stderr, "response headers", header)
				printMetadata(stderr, "response trailers", trailer)
			}
			if err != nil {
				return failed(err)
			}
			return printer.print(reply)
		}
		sent := false
		next = func() ([]byte, error) {
			if sent {
				return nil, io.EOF
			}
			sent = true
			return marshalRequest(req, text)
		}
	}
	{
		var header, trailer metadata.MD
		err := callStream(metadata.NewOutgoingContext(callCtx, reqMD), cl, md, full, next, types, printer, append(callOpts, grpc.Header(&header), grpc.Trailer(&trailer))...)
		if *verbose {
			printMetadata(stderr, "response headers", header)
			printMetadata(stderr, "response trailers", trailer)
		}
		if err != nil {
			return failed(err)
		}
		return nil
	}
}

// deadlinePassed reports whether ctx ended by its deadline, or does within
// a moment: a server that saw the same deadline (grpc-timeout) may end the
// call a little before this process's timer fires.
func deadlinePassed(ctx context.Context) bool {
	select {
	case <-ctx.Done():
	case <-time.After(100 * time.Millisecond):
	}
	return errors.Is(ctx.Err(), context.DeadlineExceeded)
}

// timedOut reports whether ctx's deadline has passed, even when its timer
// has not fired yet: a socket deadline set to the same instant (the dial's
// wait for the server's answer) may fire first.
func timedOut(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && ctx.Err() == nil && !time.Now().Before(d)
}

// oneRequest reads the one request of a unary or server-streaming method:
// an empty message when none is given, an error when more than one is.
func oneRequest(next func() ([]byte, error), md protoreflect.MethodDescriptor, text, discardUnknown bool, types typeResolver) (*dynamicpb.Message, error) {
	req := dynamicpb.NewMessage(md.Input())
	raw, err := next()
	if errors.Is(err, io.EOF) {
		return req, nil
	}
	kind := "a unary method"
	if md.IsStreamingServer() {
		kind = "a server-streaming method"
	}
	if err != nil {
		return nil, fmt.Errorf("request is not a valid %s in %s: %w", md.Input().FullName(), formatName(text), err)
	}
	if err := unmarshalRequest(raw, req, text, discardUnknown, types); err != nil {
		return nil, fmt.Errorf("request is not a valid %s in %s: %w", md.Input().FullName(), formatName(text), err)
	}
	if _, err := next(); errors.Is(err, errStdinOpen) {
		return nil, err // standard input did not end in time
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s is %s, but the request holds more than one message", md.FullName(), kind)
	}
	return req, nil
}

// callStream makes a streaming call: it sends the JSON messages src holds
// one after another (grpcurl's convention; none is an empty stream for a
// client stream, {} for a server stream), as they come, and prints the
// replies as they arrive.
func callStream(ctx context.Context, cl *client, md protoreflect.MethodDescriptor, method string, next func() ([]byte, error),
	types typeResolver, printer *replyPrinter, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: string(md.Name()), ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer()}
	stream, err := cl.conn.NewStream(ctx, desc, method, opts...)
	if err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() {
		n := 0
		for {
			raw, err := next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				sent <- fmt.Errorf("request %d is not %s: %w", n+1, formatName(printer.text), err)
				cancel()
				return
			}
			req := dynamicpb.NewMessage(md.Input())
			if err := unmarshalRequest(raw, req, printer.text, printer.discardUnknown, types); err != nil {
				sent <- fmt.Errorf("request %d is not a valid %s in %s: %w", n+1, md.Input().FullName(), formatName(printer.text), err)
				cancel()
				return
			}
			if err := stream.SendMsg(req); err != nil {
				break // the call ended: RecvMsg says how
			}
			n++
			if !md.IsStreamingClient() {
				break // a server stream takes one request
			}
		}
		if n == 0 && !md.IsStreamingClient() {
			stream.SendMsg(dynamicpb.NewMessage(md.Input())) // a server stream's one request: {}
		}
		sent <- stream.CloseSend()
	}()
	for {
		reply := dynamicpb.NewMessage(md.Output())
		err := stream.RecvMsg(reply)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			select {
			case serr := <-sent:
				if serr != nil {
					return serr
				}
			default:
			}
			return err
		}
		if err := printer.print(reply); err != nil {
			return err
		}
	}
	// The call ended well; requests still unread (standard input not
	// closed) no longer matter.
	select {
	case err := <-sent:
		return err
	default:
		return nil
	}
}

// splitMethod accepts package.Service/Method, /package.Service/Method and
// package.Service.Method.
func splitMethod(s string) (service, method string, err error) {
	t := strings.TrimPrefix(s, "/")
	i := strings.LastIndexByte(t, '/')
	if i < 0 {
		i = strings.LastIndexByte(t, '.')
	}
	if i <= 0 || i == len(t)-1 || strings.ContainsRune(t[i+1:], '/') {
		return "", "", usageErrorf("method %q: want package.Service/Method", s)
	}
	return t[:i], t[i+1:], nil
}

// stdin is where -d @ reads the request.
var stdin io.Reader = os.Stdin

// maxRequestJSON bounds a request read from standard input.
const maxRequestJSON = 64 << 20

// callError is the error of a failed call: its message names the status
// and prints the status details as JSON, and the exit status is 64 plus
// the gRPC code, as grpcurl's (so that scripts testing it keep working).
func callError(what string, err error, types typeResolver) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, unprefixed{err})
	}
	msg := fmt.Sprintf("%s: %v", what, err)
	for _, d := range st.Proto().GetDetails() {
		j, jerr := (protojson.MarshalOptions{Resolver: types}).Marshal(d)
		if jerr != nil {
			j = []byte(fmt.Sprintf("(a %s that cannot be printed: %v)", d.GetTypeUrl(), jerr))
		}
		msg += "; detail: " + string(j)
	}
	return &exitError{code: 64 + int(st.Code()), err: errors.New(msg)}
}

// printMetadata prints metadata one "name: value" line each, sorted, -bin
// values in base64.
func printMetadata(w io.Writer, what string, md metadata.MD) {
	fmt.Fprintf(w, "%s:\n", what)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range md[k] {
			if strings.HasSuffix(k, "-bin") {
				v = base64.StdEncoding.EncodeToString([]byte(v))
			}
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
}
