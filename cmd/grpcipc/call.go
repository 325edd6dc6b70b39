package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // google.rpc details, printed by name
	"google.golang.org/grpc"

	"github.com/bufbuild/protocompile"
	"github.com/grpcipc/grpcipc"
	"github.com/jhump/protoreflect/v2/grpcreflect"
	"github.com/jhump/protoreflect/v2/protoprint"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// typeResolver is what protojson needs to resolve types in Any fields.
type typeResolver interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
}

// client is a connection and where its service descriptions come from:
// server reflection, or .proto files given with --proto or --protoset.
type client struct {
	ep    grpcipc.Endpoint
	conn  *grpcipc.ClientConn
	refl  *grpcreflect.Client // nil with --proto or --protoset
	files *protoregistry.Files
	types typeResolver
	limit time.Duration // of connecting and reflection
}

func connect(ctx context.Context, f *clientFlags) (*client, error) {
	ep, err := endpointOrDefault(*f.connect)
	if err != nil {
		return nil, err
	}
	opts, err := f.options(ctx)
	if err != nil {
		return nil, err
	}
	var files *protoregistry.Files
	switch {
	case len(f.protos) > 0 && len(f.protosets) > 0:
		return nil, usageErrorf("give --proto or --protoset, not both")
	case len(f.protos) > 0:
		if files, err = compileProtos(ctx, f.protos, f.importPaths); err != nil {
			return nil, err
		}
	case len(f.protosets) > 0:
		if files, err = loadProtosets(ctx, f.protosets); err != nil {
			return nil, err
		}
	}
	conn, err := grpcipc.NewClient(ep.String(), opts...)
	if err != nil {
		return nil, err
	}
	cl := &client{ep: ep, conn: conn, files: files, limit: f.connectTimeout.or(*f.timeout)}
	if files != nil {
		cl.types = anyOf{dynamicpb.NewTypes(files), protoregistry.GlobalTypes}
	} else {
		md, err := f.metadata(false)
		if err != nil {
			conn.Close()
			return nil, err
		}
		cl.refl = grpcreflect.NewClientAuto(metadata.NewOutgoingContext(ctx, md), conn)
		cl.types = anyOf{cl.refl.AsResolver().AsTypeResolver(), protoregistry.GlobalTypes}
	}
	return cl, nil
}

// connectBounded connects within --connect-timeout (or --timeout), for
// commands that make no call of their own; done closes the client.
func connectBounded(ctx context.Context, f *clientFlags) (cl *client, done func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, f.connectTimeout.or(*f.timeout))
	if cl, err = connect(ctx, f); err != nil {
		cancel()
		return nil, nil, err
	}
	return cl, func() { cl.Close(); cancel() }, nil
}

// compileProtos parses .proto files, for servers without reflection. Each
// file, and each it imports, is read within ctx and up to
// maxDescriptorFile bytes.
func compileProtos(ctx context.Context, protos, importPaths []string) (*protoregistry.Files, error) {
	protos, importPaths = protoNames(protos, importPaths)
	read := func(path string) (io.ReadCloser, error) {
		b, err := readCapped(ctx, "", path, maxDescriptorFile) // the error is the compiler's, which says --proto
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	comp := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: importPaths, Accessor: read})}
	compiled, err := comp.Compile(ctx, protos...)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("--proto: not read and compiled in time (--connect-timeout, or --timeout): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("--proto: %w", err)
	}
	files := new(protoregistry.Files)
	for _, f := range compiled {
		if err := files.RegisterFile(f); err != nil {
			return nil, fmt.Errorf("--proto: %w", err)
		}
	}
	return files, nil
}

// loadProtosets reads compiled descriptor sets, for servers without
// reflection. Each set must hold the imports of its files (protoc's
// --include_imports), or they must be in another of the sets. Each is
// read within ctx and up to maxDescriptorFile bytes.
func loadProtosets(ctx context.Context, names []string) (*protoregistry.Files, error) {
	var all descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	for _, name := range names {
		b, err := readCapped(ctx, "--protoset", name, maxDescriptorFile)
		if err != nil {
			return nil, err
		}
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(b, &set); err != nil {
			return nil, fmt.Errorf("--protoset %s: not a FileDescriptorSet: %w", name, err)
		}
		for _, fd := range set.GetFile() {
			if !seen[fd.GetName()] {
				seen[fd.GetName()] = true
				all.File = append(all.File, fd)
			}
		}
	}
	files, err := protodesc.NewFiles(&all)
	if err != nil {
		return nil, fmt.Errorf("--protoset: %w (compile it with protoc --include_imports)", err)
	}
	return files, nil
}

func (c *client) Close() {
	if c.refl != nil {
		c.refl.Reset()
	}
	c.conn.Close()
}

func (c *client) service(name string) (protoreflect.ServiceDescriptor, error) {
	d, err := c.find(name, "service")
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s: %q is not a service", c.ep, name)
	}
	return sd, nil
}

// services lists the services the server offers, or the --proto files
// describe.
func (c *client) services() ([]string, error) {
	var names []string
	if c.files == nil {
		fulls, err := c.refl.ListServices()
		if err != nil {
			return nil, c.reflectionError(err)
		}
		for _, n := range fulls {
			names = append(names, string(n))
		}
	} else {
		c.files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
			for i := 0; i < f.Services().Len(); i++ {
				names = append(names, string(f.Services().Get(i).FullName()))
			}
			return true
		})
	}
	slices.Sort(names)
	return names, nil
}

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

func runList(ctx context.Context, args []string, stdout io.Writer) error {
	c := newCommand("list", "[--connect ENDPOINT] [--timeout D] [--expect-server P]... [TLS flags] [SERVICE]",
		"List the services the server offers by reflection (or those of the --proto or\n"+
			"--protoset files), or the methods of SERVICE.", 0, 1, stdout)
	flags := addClientFlags(c.fs, false)
	export := addExportFlags(c.fs)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	cl, done, err := connectBounded(ctx, flags)
	if err != nil {
		return err
	}
	defer done()
	if len(pos) == 1 {
		sd, err := cl.service(pos[0])
		if err != nil {
			return err
		}
		// grpcurl's form, so that scripts move over: full names, sorted
		// ("describe SERVICE" shows the signatures).
		var methods []string
		for i := 0; i < sd.Methods().Len(); i++ {
			methods = append(methods, string(sd.Methods().Get(i).FullName()))
		}
		slices.Sort(methods)
		for _, m := range methods {
			fmt.Fprintln(stdout, m)
		}
		return export.write([]protoreflect.Descriptor{sd})
	}
	names, err := cl.services()
	if err != nil {
		return err
	}
	var ds []protoreflect.Descriptor
	for _, n := range names {
		fmt.Fprintln(stdout, n)
		if *export.protosetOut != "" || *export.protoOutDir != "" {
			sd, err := cl.service(n)
			if err != nil {
				return err
			}
			ds = append(ds, sd)
		}
	}
	return export.write(ds)
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
		return fmt.Errorf("%s: %w", what, err)
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

// parseHeaders reads -H's "name: value" pairs; the values of -bin names
// are base64, as grpcurl takes them.
func parseHeaders(hs []string) (metadata.MD, error) {
	md := metadata.MD{}
	for _, h := range hs {
		name, value, ok := strings.Cut(h, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" {
			return nil, usageErrorf("header %q: want \"name: value\"", h)
		}
		value = strings.TrimSpace(value)
		if strings.HasSuffix(name, "-bin") {
			// base64, as grpcurl takes it; what is not base64 is sent as
			// it is, as grpcurl sends it.
			if b, err := base64.StdEncoding.DecodeString(value); err == nil {
				value = string(b)
			} else if b, err := base64.RawStdEncoding.DecodeString(value); err == nil {
				value = string(b)
			}
		}
		md.Append(name, value)
	}
	return md, nil
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

// protoNames turns --proto paths into names the compiler finds through the
// import paths, as protoc does: a file under an import path is named
// relative to it; an absolute path under none gets its directory as one
// more import path (the compiler would otherwise join it to each import
// path: "/x/proto/x/proto/a.proto").
func protoNames(protos, importPaths []string) ([]string, []string) {
	if len(importPaths) == 0 {
		return protos, importPaths
	}
	names := make([]string, len(protos))
	paths := slices.Clone(importPaths)
	for i, p := range protos {
		names[i] = p
		if !filepath.IsAbs(p) {
			continue
		}
		found := false
		for _, ip := range importPaths {
			abs, err := filepath.Abs(ip)
			if err != nil {
				continue
			}
			if rel, err := filepath.Rel(abs, p); err == nil && filepath.IsLocal(rel) {
				names[i], found = filepath.ToSlash(rel), true
				break
			}
		}
		if !found {
			names[i] = filepath.Base(p)
			if dir := filepath.Dir(p); !slices.Contains(paths, dir) {
				paths = append(paths, dir)
			}
		}
	}
	return names, paths
}

func runDescribe(ctx context.Context, args []string, stdout io.Writer) error {
	c := newCommand("describe", "[--connect ENDPOINT] [--timeout D] [--expect-server P]... [TLS flags] [SYMBOL]",
		"Print the definition of SYMBOL, a service, method (package.Service/Method or\n"+
			"package.Service.Method), message or enum, in .proto syntax, found by server\n"+
			"reflection (or in the --proto or --protoset files), as grpcurl describe does;\n"+
			"with no SYMBOL, every service.", 0, 1, stdout)
	flags := addClientFlags(c.fs, false)
	export := addExportFlags(c.fs)
	msgTemplate := c.fs.Bool("msg-template", false, "after a message's definition, print a JSON template of it: every field, with\nits default value (as grpcurl's -msg-template)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	cl, done, err := connectBounded(ctx, flags)
	if err != nil {
		return err
	}
	defer done()
	var names []string
	if len(pos) == 0 {
		if names, err = cl.services(); err != nil {
			return err
		}
	} else {
		name := strings.TrimPrefix(pos[0], "/")
		if svc, m, ok := strings.Cut(name, "/"); ok {
			name = svc + "." + m
		}
		names = []string{name}
	}
	var ds []protoreflect.Descriptor
	for _, name := range names {
		d, err := cl.find(name, "symbol")
		if err != nil {
			return err
		}
		if err := describe(stdout, d, *msgTemplate, cl.types); err != nil {
			return err
		}
		ds = append(ds, d)
	}
	return export.write(ds)
}

// describe prints d in .proto syntax, as grpcurl does, and with template a
// message's JSON template.
func describe(stdout io.Writer, d protoreflect.Descriptor, template bool, types typeResolver) error {
	// grpcurl's printer settings, so that the output is the same.
	p := protoprint.Printer{Compact: true, SortElements: true, ForceFullyQualifiedNames: true, OmitComments: protoprint.CommentsNonDoc}
	text, err := p.PrintProtoToString(d)
	if err != nil {
		return fmt.Errorf("printing %s: %w", d.FullName(), err)
	}
	fmt.Fprintf(stdout, "%s is a %s:\n%s", d.FullName(), kindOf(d), strings.TrimLeft(text, "\n"))
	if !strings.HasSuffix(text, "\n") {
		fmt.Fprintln(stdout)
	}
	if md, ok := d.(protoreflect.MessageDescriptor); ok && template {
		fmt.Fprintln(stdout, "\nMessage template:")
		printer := &replyPrinter{w: stdout, opts: protojson.MarshalOptions{Resolver: types, EmitUnpopulated: true}}
		if err := printer.print(messageTemplate(md)); err != nil {
			return err
		}
	}
	return nil
}

// find looks a symbol up by reflection or in the --proto files; kind
// names what was looked for in the error for one that is not there.
func (c *client) find(name, kind string) (protoreflect.Descriptor, error) {
	var d protoreflect.Descriptor
	var err error
	where := "the server (see grpcipc list)"
	if c.files != nil {
		d, err = c.files.FindDescriptorByName(protoreflect.FullName(name))
		where = "the --proto or --protoset files"
	} else {
		d, err = c.refl.AsResolver().FindDescriptorByName(protoreflect.FullName(name))
	}
	if errors.Is(err, protoregistry.NotFound) || grpcreflect.IsElementNotFoundError(err) {
		return nil, fmt.Errorf("%s: no %s %q in %s", c.ep, kind, name, where)
	} else if err != nil {
		return nil, c.reflectionError(err)
	}
	return d, nil
}

// reflectionError says why reflection failed: in words for a status (the
// connection's, often), and naming the limit when time ran out.
func (c *client) reflectionError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: reflection: %w", c.ep, err)
	}
	// Exit status 1, as grpcurl's when it cannot connect or reflect.
	if st.Code() == codes.DeadlineExceeded {
		return fmt.Errorf("%s: no answer to connecting and reflection within %v (--connect-timeout, or --timeout)", c.ep, c.limit)
	}
	if err := notConnected(c.ep, err); err != nil {
		return err
	}
	if err := reflectionRefused(c.ep, st); err != nil {
		return err
	}
	if st.Code() == codes.Unimplemented {
		// grpcreflect tries v1, then v1alpha: the last word is v1alpha's.
		return fmt.Errorf("%s: the server offers no reflection service (Unimplemented): pass --proto or --protoset (the server said: %s)", c.ep, st.Message())
	}
	return fmt.Errorf("%s: reflection: %s: %s", c.ep, st.Code(), strings.TrimPrefix(st.Message(), "grpcipc: "))
}

// kindOf names a descriptor's kind, as grpcurl does.
func kindOf(d protoreflect.Descriptor) string {
	switch d.(type) {
	case protoreflect.ServiceDescriptor:
		return "service"
	case protoreflect.MethodDescriptor:
		return "method"
	case protoreflect.MessageDescriptor:
		return "message"
	case protoreflect.EnumDescriptor:
		return "enum"
	case protoreflect.FieldDescriptor:
		return "field"
	case protoreflect.EnumValueDescriptor:
		return "enum value"
	}
	return "symbol"
}

// seconds is a time limit given as grpcurl gives it (seconds, "2.5") or as
// a Go duration ("2.5s", "1m"); zero when not given.
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f > float64(math.MaxInt64/int64(time.Second)) {
			return fmt.Errorf("%q is neither seconds nor a duration", v)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 {
		return fmt.Errorf("%q is not positive", v)
	}
	*s = seconds(d)
	return nil
}

// or is the limit given, or def.
func (s seconds) or(def time.Duration) time.Duration {
	if s == 0 {
		return def
	}
	return time.Duration(s)
}

func formatName(text bool) string {
	if text {
		return "the text format"
	}
	return "JSON"
}

// unmarshalRequest reads one request in JSON or the text format;
// discardUnknown ignores fields the message does not have.
func unmarshalRequest(b []byte, m proto.Message, text, discardUnknown bool, types typeResolver) error {
	if text {
		return prototext.UnmarshalOptions{Resolver: types, DiscardUnknown: discardUnknown}.Unmarshal(b, m)
	}
	return protojson.UnmarshalOptions{Resolver: types, DiscardUnknown: discardUnknown}.Unmarshal(b, m)
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
