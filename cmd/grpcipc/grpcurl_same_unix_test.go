//go:build unix

package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestSameOutputAsGrpcurl: the same list, describe and call, made by
// grpcurl (v1.9.4, as CI installs it) and by grpcipc against "grpcipc
// serve", print the same standard output and exit with the same status,
// on a socket file and (on Linux) on an abstract socket, which grpcurl
// reaches as unix:@NAME.
func TestSameOutputAsGrpcurl(t *testing.T) {
	grpcurl := testutil.Tool(t, "grpcurl", "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4")
	dir := testutil.ShortTempDir(t)
	sock := filepath.Join(dir, "s.sock")
	protoset := filepath.Join(dir, "echo.protoset")
	writeEchoProtoset(t, protoset)
	type target struct {
		name, grpcipc string
		grpcurl       []string
	}
	targets := []target{{"socket file", "unix://" + sock, []string{"-plaintext", "-unix", sock}}}
	startServe(t, "unix://"+sock)
	if runtime.GOOS == "linux" {
		name := "grpcipc-same-" + filepath.Base(dir)
		startServe(t, "unix-abstract:"+name)
		targets = append(targets, target{"abstract socket", "unix:@" + name, []string{"-plaintext", "unix:@" + name}})
	}

	cases := []struct {
		name  string
		args  []string // grpcurl's flags and verb; grpcipc's command comes first
		stdin string
		json  bool // compare standard error as JSON values (grpcurl orders an Any's fields otherwise)
	}{
		{name: "list", args: []string{"list"}},
		{name: "list service", args: []string{"list", "grpcipc.examples.v1.Echo"}},
		{name: "describe service", args: []string{"describe", "grpcipc.examples.v1.Echo"}},
		{name: "describe method", args: []string{"describe", "grpcipc.examples.v1.Echo.Collect"}},
		{name: "describe message", args: []string{"describe", "grpc.health.v1.HealthCheckResponse"}},
		{name: "describe -msg-template", args: []string{"-msg-template", "describe", "grpcipc.examples.v1.EchoRequest"}},
		{name: "unary", args: []string{"-d", `{"text": "hi"}`, "grpcipc.examples.v1.Echo/Say"}},
		{name: "unary, empty request", args: []string{"grpcipc.examples.v1.Echo/Say"}},
		{name: "request on stdin", args: []string{"-d", "@", "grpcipc.examples.v1.Echo/Say"}, stdin: `{"text": "in"}`},
		{name: "server stream", args: []string{"-d", `{"text": "x", "repeat": 3}`, "grpcipc.examples.v1.Echo/Expand"}},
		{name: "client stream", args: []string{"-d", "@", "grpcipc.examples.v1.Echo/Collect"}, stdin: `{"text": "a"} {"text": "b"}`},
		{name: "bidi stream", args: []string{"-d", "@", "grpcipc.examples.v1.Echo/Chat"}, stdin: `{"text": "a"}` + "\n" + `{"text": "b"}`},
		{name: "-emit-defaults", args: []string{"-emit-defaults", "-d", `{"text": "z"}`, "grpcipc.examples.v1.Echo/Say"}},
		{name: "-format text", args: []string{"-format", "text", "-d", `text: "t" repeat: 2`, "grpcipc.examples.v1.Echo/Expand"}},
		{name: "-format text, client stream", args: []string{"-format", "text", "-d", "@", "grpcipc.examples.v1.Echo/Collect"}, stdin: "text: \"a\"\x1etext: \"b\""},
		{name: "-allow-unknown-fields", args: []string{"-allow-unknown-fields", "-d", `{"text": "u", "nope": 1}`, "grpcipc.examples.v1.Echo/Say"}},
		{name: "a failed call's exit status", args: []string{"-d", `{"failCode": 7}`, "grpcipc.examples.v1.Echo/Say"}},
		{name: "a stream that fails midway", args: []string{"-d", "@", "grpcipc.examples.v1.Echo/Chat"}, stdin: `{"text": "ok"} {"failCode": 14}`},
		{name: "-format-error", args: []string{"-format-error", "-d", `{"text": "e", "failCode": 9}`, "grpcipc.examples.v1.Echo/Say"}, json: true},
		{name: "describe, every service", args: []string{"describe"}},
		{name: "client stream, no request", args: []string{"grpcipc.examples.v1.Echo/Collect"}},
		{name: "bidi stream, no request", args: []string{"grpcipc.examples.v1.Echo/Chat"}},
		{name: "unary, empty standard input", args: []string{"-d", "@", "grpcipc.examples.v1.Echo/Say"}, stdin: "  \n"},
		{name: "server stream given two requests", args: []string{"-d", `{"text": "a"} {"text": "b"}`, "grpcipc.examples.v1.Echo/Expand"}},
		{name: "unary given two requests", args: []string{"-d", `{"text": "a"} {"text": "b"}`, "grpcipc.examples.v1.Echo/Say"}},
		{name: "-format text, no request", args: []string{"-format", "text", "grpcipc.examples.v1.Echo/Collect"}},
		{name: "-format text, an empty piece", args: []string{"-format", "text", "-d", "@", "grpcipc.examples.v1.Echo/Collect"}, stdin: "text: \"a\"\x1e\x1etext: \"b\""},
		{name: "-plaintext, as grpcurl scripts say", args: []string{"-plaintext", "-d", `{"text": "p"}`, "grpcipc.examples.v1.Echo/Say"}},
		{name: "a -bin header that is not base64", args: []string{"-H", "echo-raw-bin: not base64!", "grpcipc.examples.v1.Echo/Say"}},
		{name: "-protoset", args: []string{"-protoset", protoset, "-d", `{"text": "s"}`, "grpcipc.examples.v1.Echo/Say"}},
		{name: "list -protoset", args: []string{"-protoset", protoset, "list"}},
	}
	for _, tg := range targets {
		for _, tc := range cases {
			t.Run(tg.name+"/"+tc.name, func(t *testing.T) {
				// grpcurl: flags, address, verb or method, arguments.
				flags, verb := tc.args, []string(nil)
				for i, a := range tc.args {
					if a == "list" || a == "describe" || strings.Contains(a, "/") && !strings.HasPrefix(a, "{") && !strings.HasPrefix(a, "/") {
						flags, verb = tc.args[:i], tc.args[i:]
						break
					}
				}
				gargs := append(append(append([]string{}, flags...), tg.grpcurl...), verb...)
				gcmd := exec.Command(grpcurl, gargs...)
				gcmd.Stdin = strings.NewReader(tc.stdin)
				var gout, gerr strings.Builder
				gcmd.Stdout, gcmd.Stderr = &gout, &gerr
				gcmd.Run()

				// grpcipc: the verb (call for a method), --connect, the flags, the arguments.
				cmdName, rest := "call", verb
				if verb[0] == "list" || verb[0] == "describe" {
					cmdName, rest = verb[0], verb[1:]
				}
				iargs := append(append([]string{cmdName, "--connect", tg.grpcipc}, flags...), rest...)
				icmd := cliCommand(t, nil, iargs...)
				icmd.Stdin = strings.NewReader(tc.stdin)
				var iout, ierr strings.Builder
				icmd.Stdout, icmd.Stderr = &iout, &ierr
				icmd.Run()

				if g, i := gcmd.ProcessState.ExitCode(), icmd.ProcessState.ExitCode(); g != i {
					t.Errorf("grpcurl %v exits %d, grpcipc %v %d (%s)", gargs, g, iargs, i, ierr.String())
				}
				if tc.json {
					var gv, iv any
					if err := json.Unmarshal([]byte(gerr.String()), &gv); err != nil {
						t.Fatalf("grpcurl printed no JSON on stderr: %q", gerr.String())
					}
					if err := json.Unmarshal([]byte(ierr.String()), &iv); err != nil || !reflect.DeepEqual(gv, iv) {
						t.Errorf("grpcurl %v says\n%s\ngrpcipc %v says\n%s", gargs, gerr.String(), iargs, ierr.String())
					}
					return
				}
				if gout.String() != iout.String() {
					t.Errorf("grpcurl %v prints\n%q\ngrpcipc %v prints\n%q", gargs, gout.String(), iargs, iout.String())
				}
			})
		}
	}
}
