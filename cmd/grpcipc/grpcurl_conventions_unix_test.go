//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// TestCallGrpcurlConventions: what grpcurl users rely on works the same:
// -d @ reads the request from standard input, a failed call exits with
// 64 plus its gRPC code, --version says which grpcipc this is.
func TestCallGrpcurlConventions(t *testing.T) {
	endpoint := "unix://" + filepath.Join(testutil.ShortTempDir(t), "g.sock")
	startServe(t, endpoint)

	cmd := cliCommand(t, nil, "call", "--connect", endpoint, "-d", "@", "greet.Greeter/SayHello")
	cmd.Stdin = strings.NewReader(`{"name": "from stdin"}`)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), `"Hello from stdin"`) {
		t.Errorf("call -d @: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
	if code, stdout, _ := runCLI(t, nil, "call", "--connect", endpoint, "-d", `{"name":"flag"}`, "greet.Greeter/SayHello"); code != 0 || !strings.Contains(stdout, `"Hello flag"`) {
		t.Errorf("call -d JSON: exit %d, %q", code, stdout)
	}
	if code, _, stderr := runCLI(t, nil, "call", "--connect", endpoint, "-d", "{}", "greet.Greeter/SayHello", "{}"); code != 2 || !strings.Contains(stderr, "not both") {
		t.Errorf("a request given twice: exit %d, %q; want 2 and a usage error", code, stderr)
	}

	// NOT_FOUND (5): exit 69, as grpcurl's.
	code, _, stderr := runCLI(t, nil, "call", "--connect", endpoint, "-d", `{"service":"no.such.Service"}`, "grpc.health.v1.Health/Check")
	if code != 64+int(codes.NotFound) || !strings.Contains(stderr, "NotFound") {
		t.Errorf("a call that fails with NotFound: exit %d, %q; want %d", code, stderr, 64+int(codes.NotFound))
	}

	if code, stdout, _ := runCLI(t, nil, "--version"); code != 0 || !strings.HasPrefix(stdout, "grpcipc ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
}

// TestCallErrorDetails: a failed call's status details are printed, by
// name and as JSON, and its exit status is 64 plus its code.
func TestCallErrorDetails(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "not ready").WithDetails(&errdetails.ErrorInfo{Reason: "WARMING_UP", Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	got := callError("call x.Y/Z on unix:///s", st.Err(), protoregistry.GlobalTypes)
	var ee *exitError
	if !errors.As(got, &ee) || ee.code != 64+int(codes.FailedPrecondition) {
		t.Fatalf("callError = %v; want an exit status of %d", got, 64+int(codes.FailedPrecondition))
	}
	for _, want := range []string{"FailedPrecondition", "not ready", "google.rpc.ErrorInfo", "WARMING_UP", "example.com"} {
		if !strings.Contains(got.Error(), want) {
			t.Errorf("callError's message %q lacks %q", got, want)
		}
	}
}

// TestCallHeadersVerboseDefaults: -H sends request metadata (-bin values
// in base64), -v prints the response headers and trailers, and
// -emit-defaults prints fields that hold their default. grpc-go's interop
// server echoes two of the request's metadata into its reply's.
func TestCallHeadersVerboseDefaults(t *testing.T) {
	endpoint := serveInteropTestService(t)

	code, stdout, stderr := runCLI(t, nil, "call", "--connect", endpoint, "-v",
		"-H", "x-grpc-test-echo-initial: hello header",
		"-H", "x-grpc-test-echo-trailing-bin: "+base64.StdEncoding.EncodeToString([]byte{0, 0xff, 'x'}),
		"grpc.testing.TestService/UnaryCall")
	if code != 0 {
		t.Fatalf("call -H -v: exit %d: %s", code, stderr)
	}
	headers, trailers, _ := strings.Cut(stderr, "response trailers:")
	if !strings.Contains(headers, "x-grpc-test-echo-initial: hello header") {
		t.Errorf("-v printed no echoed header: %q", stderr)
	}
	if !strings.Contains(trailers, "x-grpc-test-echo-trailing-bin: "+base64.StdEncoding.EncodeToString([]byte{0, 0xff, 'x'})) {
		t.Errorf("-v printed no echoed binary trailer: %q", stderr)
	}
	if strings.Contains(stdout, "username") {
		t.Errorf("without -emit-defaults the reply shows empty fields: %q", stdout)
	}
	code, stdout, stderr = runCLI(t, nil, "call", "--connect", endpoint, "-emit-defaults", "grpc.testing.TestService/UnaryCall")
	if code != 0 || !strings.Contains(stdout, `"username": ""`) {
		t.Errorf("-emit-defaults: exit %d, %q, %s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "call", "--connect", endpoint, "-H", "no colon", "grpc.testing.TestService/EmptyCall"); code != 2 || !strings.Contains(stderr, `want "name: value"`) {
		t.Errorf("-H without a colon: exit %d, %q; want 2 and what is wanted", code, stderr)
	}
}

// serveInteropTestService serves grpc-go's interop test service, with
// reflection, in this process, and returns its endpoint.
func serveInteropTestService(t *testing.T) string {
	t.Helper()
	endpoint := testutil.Endpoint(t)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcipc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	reflection.Register(srv)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return endpoint
}

// TestCallStreams: server, client and bidi streaming calls, their
// requests a sequence of JSON messages (from -d, or from standard input
// with -d @), each reply printed as it arrives.
func TestCallStreams(t *testing.T) {
	endpoint := serveInteropTestService(t)
	countReplies := func(stdout string) int { return strings.Count(stdout, `"payload"`) }

	code, stdout, stderr := runCLI(t, nil, "call", "--connect", endpoint,
		"-d", `{"responseParameters": [{"size": 1}, {"size": 2}, {"size": 3}]}`, "grpc.testing.TestService/StreamingOutputCall")
	if code != 0 || countReplies(stdout) != 3 {
		t.Errorf("a server stream: exit %d, %d replies in %q (%s); want 3", code, countReplies(stdout), stdout, stderr)
	}

	cmd := cliCommand(t, nil, "call", "--connect", endpoint, "-d", "@", "grpc.testing.TestService/StreamingInputCall")
	cmd.Stdin = strings.NewReader(`{"payload": {"body": "AAA="}}` + "\n" + `{"payload": {"body": "AAAA"}}`)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), `"aggregatedPayloadSize": 5`) {
		t.Errorf("a client stream from standard input: %v, %q, %q; want an aggregated size of 5", err, out.String(), errOut.String())
	}

	cmd = cliCommand(t, nil, "call", "--connect", endpoint, "-d", "@", "grpc.testing.TestService/FullDuplexCall")
	cmd.Stdin = strings.NewReader(`{"responseParameters": [{"size": 4}]} {"responseParameters": [{"size": 5}]}`)
	out.Reset()
	errOut.Reset()
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || countReplies(out.String()) != 2 {
		t.Errorf("a bidi stream: %v, %d replies in %q (%s); want 2", err, countReplies(out.String()), out.String(), errOut.String())
	}

	if code, _, stderr := runCLI(t, nil, "call", "--connect", endpoint, "-d", `{"payload": 1} not json`, "grpc.testing.TestService/StreamingInputCall"); code == 0 || !strings.Contains(stderr, "request 1") {
		t.Errorf("a stream of bad JSON: exit %d, %q; want a failure naming the request", code, stderr)
	}
}

// TestProtoAbsolutePath: an absolute --proto path with --import-path is
// found (it was joined to the import path: "/x/proto/x/proto/...").
func TestProtoAbsolutePath(t *testing.T) {
	root, err := filepath.Abs("../../proto")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ protos, imports []string }{
		{[]string{filepath.Join(root, "greet/greet.proto")}, []string{root}},
		{[]string{filepath.Join(root, "greet/greet.proto")}, []string{t.TempDir()}},
		{[]string{"greet/greet.proto"}, []string{root}},
	} {
		files, err := compileProtos(context.Background(), tc.protos, tc.imports)
		if err != nil {
			t.Errorf("--proto %v --import-path %v: %v", tc.protos, tc.imports, err)
			continue
		}
		if _, err := files.FindDescriptorByName("greet.Greeter"); err != nil {
			t.Errorf("--proto %v --import-path %v: no greet.Greeter: %v", tc.protos, tc.imports, err)
		}
	}
}

// TestDescribe: describe prints a service, a method and a message in
// .proto syntax, and names a symbol the server does not have.
func TestDescribe(t *testing.T) {
	endpoint := "unix://" + filepath.Join(testutil.ShortTempDir(t), "g.sock")
	startServe(t, endpoint)
	for _, tc := range []struct{ symbol, want string }{
		{"greet.Greeter", "greet.Greeter is a service:\nservice Greeter {\n  rpc SayHello ( .greet.HelloRequest ) returns ( .greet.HelloReply );\n}\n"},
		{"greet.Greeter/SayHello", "greet.Greeter.SayHello is a method:\nrpc SayHello ( .greet.HelloRequest ) returns ( .greet.HelloReply );\n"},
		{"greet.HelloRequest", "greet.HelloRequest is a message:\nmessage HelloRequest {\n  string name = 1;\n}\n"},
	} {
		code, stdout, stderr := runCLI(t, nil, "describe", "--connect", endpoint, tc.symbol)
		if code != 0 || stdout != tc.want {
			t.Errorf("describe %s: exit %d, %q (%s); want %q", tc.symbol, code, stdout, stderr, tc.want)
		}
	}
	code, _, stderr := runCLI(t, nil, "describe", "--connect", endpoint, "greet.Nope")
	if code != 1 {
		t.Errorf("describe greet.Nope exited %d, want 1", code)
	}
	oneErrorLine(t, stderr, `no symbol "greet.Nope"`)
}

// TestTimeoutsApart: --connect-timeout and --max-time take grpcurl's
// seconds or a duration; --max-time bounds the whole command (a stream
// that does not end gets DeadlineExceeded, exit 68, having printed its
// update). The bound is long enough for a loaded machine to connect, read
// the server's reflection and print the first update within it.
func TestTimeoutsApart(t *testing.T) {
	endpoint := "unix://" + filepath.Join(testutil.ShortTempDir(t), "g.sock")
	startServe(t, endpoint)
	code, stdout, stderr := runCLI(t, nil, "call", "--connect", endpoint, "--connect-timeout", "5", "--max-time", "1.5", "grpc.health.v1.Health/Watch")
	if code != 64+int(codes.DeadlineExceeded) || !strings.Contains(stdout, `"SERVING"`) {
		t.Errorf("--max-time 1.5 on a stream that does not end: exit %d, %q, %q", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, nil, "call", "--connect", endpoint, "--connect-timeout", "2s", "--max-time", "1m", "greet.Greeter/SayHello"); code != 0 || !strings.Contains(stdout, "Hello") {
		t.Errorf("durations: exit %d, %q, %q", code, stdout, stderr)
	}
	for _, bad := range []string{"soon", "-1", "0"} {
		if code, _, stderr := runCLI(t, nil, "call", "--connect", endpoint, "--max-time", bad, "greet.Greeter/SayHello"); code != 2 {
			t.Errorf("--max-time %s: exit %d, %q; want 2", bad, code, stderr)
		}
	}
}

// TestFormatText: -format text takes and prints protobuf's text format;
// a stream's messages are separated by 0x1e, as grpcurl's.
func TestFormatText(t *testing.T) {
	endpoint := serveInteropTestService(t)
	greet := "unix://" + filepath.Join(testutil.ShortTempDir(t), "g.sock")
	startServe(t, greet)
	code, stdout, stderr := runCLI(t, nil, "call", "--connect", greet, "-format", "text", "-d", `name: "in text"`, "greet.Greeter/SayHello")
	// prototext varies its spacing on purpose: compare words.
	words := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if code != 0 || words(stdout) != `message: "Hello in text"` {
		t.Errorf("unary in text: exit %d, %q, %s", code, stdout, stderr)
	}

	cmd := cliCommand(t, nil, "call", "--connect", endpoint, "-format", "text", "-d", "@", "grpc.testing.TestService/StreamingInputCall")
	cmd.Stdin = strings.NewReader("payload { body: \"abc\" }\x1epayload { body: \"d\" }\n")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || words(out.String()) != "aggregated_payload_size: 4" {
		t.Errorf("a client stream in text: %v, %q, %q", err, out.String(), errOut.String())
	}

	code, stdout, stderr = runCLI(t, nil, "call", "--connect", endpoint, "-format", "text",
		"-d", "response_parameters { size: 1 } response_parameters { size: 2 }", "grpc.testing.TestService/StreamingOutputCall")
	if code != 0 || strings.Count(stdout, "\x1e") != 1 || strings.Count(words(stdout), "payload: {") != 2 {
		t.Errorf("a server stream in text: exit %d, %q, %s; want two replies separated by 0x1e", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "call", "--connect", greet, "-format", "yaml", "greet.Greeter/SayHello"); code != 2 || !strings.Contains(stderr, "json or text") {
		t.Errorf("-format yaml: exit %d, %q; want 2", code, stderr)
	}
}
