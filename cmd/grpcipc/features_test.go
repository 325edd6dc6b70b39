package main

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/examples/echopb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

// feature is one row of the README's table of call, list and describe
// features (grpcurl | grpcipc), tried against "grpcipc serve".
type feature struct {
	name   string
	args   []string // after the command and --connect
	stdin  string
	code   int      // the exit status wanted
	stdout []string // what standard output must hold, in this order
	stderr []string // what standard error must hold
	absent []string // what standard output must not hold
}

// TestCLIFeatures runs every feature of the README's CLI table against
// the demo server, over this OS's local endpoint (a named pipe on
// Windows), on the fast path and again over HTTP/2 (--http2).
func TestCLIFeatures(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	startServe(t, endpoint)
	dir := testutil.ShortTempDir(t) // t.TempDir's clean-up fails under Wine 8
	protoset := filepath.Join(dir, "echo.protoset")
	writeEchoProtoset(t, protoset)
	protoRoot, err := filepath.Abs("../../proto")
	if err != nil {
		t.Fatal(err)
	}
	bin := base64.StdEncoding.EncodeToString([]byte{0, 0xff, 'x'})
	t.Setenv("FEATURE_TOKEN", "from the environment")

	features := []feature{
		{name: "list services", args: []string{"list"},
			stdout: []string{"greet.Greeter\n", "grpc.health.v1.Health\n", "grpcipc.examples.v1.Echo\n", "grpcipc.v1.Identity\n"}},
		{name: "list methods", args: []string{"list", "grpcipc.examples.v1.Echo"},
			stdout: []string{"grpcipc.examples.v1.Echo.Chat\ngrpcipc.examples.v1.Echo.Collect\ngrpcipc.examples.v1.Echo.Expand\ngrpcipc.examples.v1.Echo.Say\n"}},
		{name: "describe", args: []string{"describe", "grpcipc.examples.v1.Echo.Chat"},
			stdout: []string{"grpcipc.examples.v1.Echo.Chat is a method:\nrpc Chat ( stream .grpcipc.examples.v1.EchoRequest ) returns ( stream .grpcipc.examples.v1.EchoReply );\n"}},
		{name: "describe --msg-template", args: []string{"describe", "--msg-template", "grpcipc.examples.v1.EchoRequest"},
			stdout: []string{"message EchoRequest {", "Message template:\n{\n  \"text\": \"\",\n  \"repeat\": 0,\n  \"failCode\": 0\n}\n"}},
		{name: "unary -d JSON", args: []string{"call", "-d", `{"text": "hi"}`, "grpcipc.examples.v1.Echo/Say"},
			stdout: []string{"{\n  \"text\": \"hi\"\n}\n"}},
		{name: "request from stdin -d @", args: []string{"call", "-d", "@", "grpcipc.examples.v1.Echo/Say"}, stdin: `{"text": "secret"}`,
			stdout: []string{`"text": "secret"`}},
		{name: "server streaming", args: []string{"call", "-d", `{"text": "x", "repeat": 3}`, "grpcipc.examples.v1.Echo/Expand"},
			stdout: []string{`"text": "x"`, `"index": 1`, `"index": 2`}},
		{name: "client streaming from stdin", args: []string{"call", "-d", "@", "grpcipc.examples.v1.Echo/Collect"},
			stdin: `{"text": "a"} {"text": "b"}` + "\n" + `{"text": "c"}`, stdout: []string{`"text": "a b c"`, `"index": 3`}},
		{name: "bidi streaming from stdin", args: []string{"call", "-d", "@", "grpcipc.examples.v1.Echo/Chat"},
			stdin: `{"text": "a"} {"text": "b"}`, stdout: []string{`"text": "a"`, `"text": "b"`, `"index": 1`}},
		{name: "-H, -v headers and trailers", args: []string{"call", "-v", "-H", "echo-plain: one", "-H", "echo-data-bin: " + bin, "grpcipc.examples.v1.Echo/Say"},
			stdout: []string{"{}\n"}, stderr: []string{"response headers:\n", "  echo-data-bin: " + bin + "\n", "  echo-plain: one\n", "response trailers:\n  echo-received: 1\n"}},
		{name: "--rpc-header, --expand-headers", args: []string{"call", "-v", "--expand-headers", "--rpc-header", "echo-token: ${FEATURE_TOKEN}", "grpcipc.examples.v1.Echo/Say"},
			stderr: []string{"  echo-token: from the environment\n"}},
		{name: "--reflect-header", args: []string{"call", "-v", "--reflect-header", "echo-reflect: only there", "grpcipc.examples.v1.Echo/Say"},
			stderr: []string{"response headers:\n"}, absent: []string{"only there"}},
		{name: "--emit-defaults", args: []string{"call", "--emit-defaults", "-d", `{"text": "z"}`, "grpcipc.examples.v1.Echo/Say"},
			stdout: []string{"{\n  \"text\": \"z\",\n  \"index\": 0\n}\n"}},
		{name: "--format text", args: []string{"call", "--format", "text", "-d", `text: "t" repeat: 2`, "grpcipc.examples.v1.Echo/Expand"},
			stdout: []string{"text: \"t\"\n\x1etext: \"t\"\nindex: 1\n"}},
		{name: "--allow-unknown-fields", args: []string{"call", "--allow-unknown-fields", "-d", `{"text": "u", "nope": 1}`, "grpcipc.examples.v1.Echo/Say"},
			stdout: []string{`"text": "u"`}},
		{name: "unknown fields refused", args: []string{"call", "-d", `{"text": "u", "nope": 1}`, "grpcipc.examples.v1.Echo/Say"},
			code: 1, stderr: []string{"nope"}},
		{name: "error details, exit 64+code", args: []string{"call", "-d", `{"text": "e", "failCode": 9}`, "grpcipc.examples.v1.Echo/Say"},
			code: 64 + int(codes.FailedPrecondition), stderr: []string{"FailedPrecondition", "failed as asked", `"@type":"type.googleapis.com/google.rpc.ErrorInfo"`, `"reason":"ASKED"`}},
		{name: "--format-error", args: []string{"call", "--format-error", "-d", `{"text": "e", "failCode": 5}`, "grpcipc.examples.v1.Echo/Expand"},
			code: 64 + int(codes.NotFound), stderr: []string{"\"code\": 5,\n", "\"message\": \"failed as asked\"", `"reason": "ASKED"`}, absent: []string{"grpcipc: call"}},
		{name: "a stream that fails midway", args: []string{"call", "-d", "@", "grpcipc.examples.v1.Echo/Chat"},
			stdin: `{"text": "ok"} {"text": "no", "failCode": 8}`, code: 64 + int(codes.ResourceExhausted), stdout: []string{`"text": "ok"`}, stderr: []string{"ResourceExhausted"}},
		{name: "--max-msg-sz", args: []string{"call", "--max-msg-sz", "10", "-d", `{"text": "longer than ten bytes"}`, "grpcipc.examples.v1.Echo/Say"},
			code: 64 + int(codes.ResourceExhausted), stderr: []string{"ResourceExhausted"}},
		{name: "--connect-timeout, --max-time", args: []string{"call", "--connect-timeout", "5", "--max-time", "0.3", "grpc.health.v1.Health/Watch"},
			code: 64 + int(codes.DeadlineExceeded), stdout: []string{`"status": "SERVING"`}},
		{name: "--proto, --import-path", args: []string{"call", "--proto", "grpcipc/examples/v1/echo.proto", "--import-path", protoRoot, "-d", `{"text": "p"}`, "grpcipc.examples.v1.Echo/Say"},
			stdout: []string{`"text": "p"`}},
		{name: "--protoset", args: []string{"call", "--protoset", protoset, "-d", `{"text": "s"}`, "grpcipc.examples.v1.Echo/Say"},
			stdout: []string{`"text": "s"`}},
		{name: "list --protoset", args: []string{"list", "--protoset", protoset},
			stdout: []string{"grpcipc.examples.v1.Echo\n"}, absent: []string{"greet.Greeter"}},
		{name: "--protoset-out", args: []string{"describe", "--protoset-out", filepath.Join(dir, "out.protoset"), "grpcipc.examples.v1.Echo"},
			stdout: []string{"service Echo {"}},
		{name: "--proto-out-dir", args: []string{"list", "--proto-out-dir", filepath.Join(dir, "out"), "grpcipc.examples.v1.Echo"},
			stdout: []string{"grpcipc.examples.v1.Echo.Say\n"}},
	}
	for _, protocol := range []string{"fast path", "http2"} {
		for _, f := range features {
			t.Run(protocol+"/"+f.name, func(t *testing.T) {
				args := append([]string{f.args[0], "--connect", endpoint}, f.args[1:]...)
				if protocol == "http2" {
					args = append(args[:3:3], append([]string{"--http2"}, args[3:]...)...)
				}
				var out, errOut strings.Builder
				var cmd *exec.Cmd
				for attempt := 1; ; attempt++ {
					out.Reset()
					errOut.Reset()
					cmd = cliCommand(t, nil, args...)
					cmd.Stdin = strings.NewReader(f.stdin)
					cmd.Stdout, cmd.Stderr = &out, &errOut
					err := cmd.Run()
					if cmd.ProcessState != nil {
						break
					}
					// Not started at all: Wine 8 now and then fails to
					// create a process. Once more; twice is a failure.
					if attempt == 2 {
						t.Fatalf("grpcipc %s did not start: %v", strings.Join(args, " "), err)
					}
					t.Logf("grpcipc did not start (%v); starting it again", err)
				}
				if code := cmd.ProcessState.ExitCode(); code != f.code {
					t.Fatalf("grpcipc %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, f.code, out.String(), errOut.String())
				}
				inOrder(t, "stdout", out.String(), f.stdout)
				inOrder(t, "stderr", errOut.String(), f.stderr)
				for _, a := range f.absent {
					if strings.Contains(out.String()+errOut.String(), a) {
						t.Errorf("the output holds %q:\n%s%s", a, out.String(), errOut.String())
					}
				}
			})
		}
	}

	// What the export flags wrote works as --protoset and as --proto.
	code, stdout, stderr := runCLI(t, nil, "call", "--connect", endpoint, "--protoset", filepath.Join(dir, "out.protoset"), "-d", `{"text": "back"}`, "grpcipc.examples.v1.Echo/Say")
	if code != 0 || !strings.Contains(stdout, `"text": "back"`) {
		t.Errorf("--protoset of describe --protoset-out: exit %d, %q, %s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, "call", "--connect", endpoint, "--proto", "grpcipc/examples/v1/echo.proto", "--import-path", filepath.Join(dir, "out"), "-d", `{"text": "again"}`, "grpcipc.examples.v1.Echo/Say")
	if code != 0 || !strings.Contains(stdout, `"text": "again"`) {
		t.Errorf("--proto of list --proto-out-dir: exit %d, %q, %s", code, stdout, stderr)
	}

	// Bad input: usage errors (exit 2) that say what was wrong.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "--proto", "x.proto", "--protoset", protoset, "grpcipc.examples.v1.Echo/Say"}, "not both"},
		{[]string{"call", "--expand-headers", "-H", "echo-x: ${GRPCIPC_SURELY_UNSET}", "grpcipc.examples.v1.Echo/Say"}, "GRPCIPC_SURELY_UNSET is not set"},
		{[]string{"call", "--servername", "x", "grpcipc.examples.v1.Echo/Say"}, "--cacert"},
		{[]string{"call", "-H", "no colon", "grpcipc.examples.v1.Echo/Say"}, `want "name: value"`},
	} {
		code, _, stderr := runCLI(t, nil, append([]string{bad.args[0], "--connect", endpoint}, bad.args[1:]...)...)
		if code != 2 {
			t.Errorf("grpcipc %v: exit %d, want 2", bad.args, code)
		}
		oneErrorLine(t, stderr, bad.want)
	}
	code, _, stderr = runCLI(t, nil, "call", "--connect", endpoint, "--protoset", filepath.Join(dir, "missing"), "grpcipc.examples.v1.Echo/Say")
	if code != 1 {
		t.Errorf("a missing --protoset: exit %d, want 1", code)
	}
	oneErrorLine(t, stderr, "missing")
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not a descriptor set"), 0o600)
	code, _, stderr = runCLI(t, nil, "call", "--connect", endpoint, "--protoset", garbage, "grpcipc.examples.v1.Echo/Say")
	if code != 1 {
		t.Errorf("a --protoset of garbage: exit %d, want 1", code)
	}
	oneErrorLine(t, stderr, "not a FileDescriptorSet")
}

// inOrder checks that s holds each of want, one after another.
func inOrder(t *testing.T, what, s string, want []string) {
	t.Helper()
	rest := s
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s lacks %q (after what came before it):\n%s", what, w, s)
			return
		}
		rest = rest[i+len(w):]
	}
}

// writeEchoProtoset writes echo.proto's compiled descriptor, as protoc
// --descriptor_set_out --include_imports would.
func writeEchoProtoset(t *testing.T, name string) {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(echopb.File_grpcipc_examples_v1_echo_proto)}}
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
