package interop

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

const grpcurlInstall = "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"

// interopEndpoints: a socket path and an abstract socket, with how grpcurl
// and grpcio name each.
type interopEndpoint struct {
	name, endpoint string
	grpcurl        []string // grpcurl's address arguments
	grpcio         string   // grpcio's target
}

func interopEndpoints(t *testing.T) []interopEndpoint {
	path := filepath.Join(testutil.ShortTempDir(t), "i.sock")
	abstract := testutil.AbstractName(t)
	return []interopEndpoint{
		{"unix path", "unix://" + path, []string{"-unix", path}, "unix://" + path},
		{"abstract", "unix-abstract:" + abstract, []string{"unix:@" + abstract}, "unix-abstract:" + abstract},
	}
}

func TestInteropGrpcurl(t *testing.T) {
	grpcurl := testutil.Tool(t, "grpcurl", grpcurlInstall)
	for _, ie := range interopEndpoints(t) {
		t.Run(ie.name, func(t *testing.T) {
			e2e.StartServer(t, ie.endpoint)
			// run runs grpcurl with args, whose last is the method (or
			// list), and returns its output and pid.
			run := func(args ...string) (string, int) {
				t.Helper()
				full := append([]string{"-plaintext"}, args[:len(args)-1]...)
				full = append(append(full, ie.grpcurl...), args[len(args)-1])
				cmd := exec.Command(grpcurl, full...)
				var out, errOut bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errOut
				if err := cmd.Run(); err != nil {
					t.Fatalf("grpcurl %v: %v: %s", full, err, errOut.String())
				}
				return out.String(), cmd.Process.Pid
			}
			list, _ := run("list")
			for _, want := range []string{"greet.Greeter", "grpc.health.v1.Health", "grpcipc.v1.Identity"} {
				if !strings.Contains(list, want) {
					t.Errorf("grpcurl list: %q lacks %s", list, want)
				}
			}
			if out, _ := run("-d", `{"name":"grpcurl"}`, "greet.Greeter/SayHello"); !strings.Contains(out, `"Hello grpcurl"`) {
				t.Errorf("grpcurl SayHello: %q", out)
			}
			if out, _ := run("grpc.health.v1.Health/Check"); !strings.Contains(out, `"SERVING"`) {
				t.Errorf("grpcurl health Check: %q", out)
			}
			out, pid := run("grpcipc.v1.Identity/WhoAmI")
			var who struct{ Pid, Uid, Transport string }
			if err := json.Unmarshal([]byte(out), &who); err != nil || who.Pid != strconv.Itoa(pid) || who.Uid != strconv.Itoa(os.Geteuid()) {
				t.Errorf("grpcurl WhoAmI = %q (%v); want grpcurl's pid %d and uid %d", out, err, pid, os.Geteuid())
			}
		})
	}
}

func TestInteropPythonClient(t *testing.T) {
	python := testutil.Python(t)
	for _, ie := range interopEndpoints(t) {
		t.Run(ie.name, func(t *testing.T) {
			ep, _ := e2e.StartServer(t, ie.endpoint)
			cmd := exec.Command(python, "client.py", ie.grpcio)
			cmd.Dir = filepath.Join("..", "..", "testdata", "interop")
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("python client: %v: %s", err, errOut.String())
			}
			var res struct {
				PID, UID     int
				Hello        string
				Health       int
				WhoTransport string `json:"who_transport"`
				WhoPID       int    `json:"who_pid"`
				WhoUID       string `json:"who_uid"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("python printed %q: %v", out, err)
			}
			if res.Hello != "Hello python" || res.Health != 1 {
				t.Errorf("python got SayHello %q, health %d", res.Hello, res.Health)
			}
			if res.WhoTransport != string(ep.Transport) || res.WhoPID != res.PID || res.WhoUID != strconv.Itoa(res.UID) {
				t.Errorf("WhoAmI for python: %+v", res)
			}
		})
	}
}

func TestInteropPythonServer(t *testing.T) {
	path := filepath.Join(testutil.ShortTempDir(t), "py.sock")
	testutil.StartPythonServer(t, filepath.Join("..", "..", "testdata", "interop"), "unix://"+path)
	conn := e2e.NewClient(t, "unix://"+path, grpcipc.WithExpectedServer(grpcipc.SameUser()))
	reply, err := greetpb.NewGreeterClient(conn).SayHello(e2e.Context(t), &greetpb.HelloRequest{Name: "grpcipc"})
	if err != nil {
		t.Fatalf("SayHello to Python: %v", err)
	}
	if reply.GetMessage() != "Hello grpcipc from python" {
		t.Errorf("Python replied %q", reply.GetMessage())
	}
}
