// Command host is the host of examples/plugin: it starts the plugin as a
// child process over inherited connections (no socket path, no port, no
// TLS), picks the service version the plugin speaks, calls it, and serves
// grpcipc.examples.v1.Echo that the plugin calls back.
//
//	go run ./examples/plugin/host            # builds the plugin first
//	go run ./examples/plugin/host -plugin PATH
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/echopb"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// echo is the host's service, which the plugin calls back.
type echo struct{ echopb.UnimplementedEchoServer }

func (echo) Say(_ context.Context, req *echopb.EchoRequest) (*echopb.EchoReply, error) {
	return &echopb.EchoReply{Text: strings.ToUpper(req.GetText())}, nil
}

func main() {
	plugin := flag.String("plugin", "", "the plugin program (default: build ./examples/plugin/plugin)")
	flag.Parse()
	if err := run(context.Background(), *plugin, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, plugin string, out io.Writer) error {
	if plugin == "" {
		dir, err := os.MkdirTemp("", "grpcipc-plugin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		plugin = filepath.Join(dir, "plugin")
		fmt.Fprintln(out, "building the plugin: go build github.com/grpcipc/grpcipc/examples/plugin/plugin")
		build := exec.Command("go", "build", "-o", plugin, "github.com/grpcipc/grpcipc/examples/plugin/plugin")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building the plugin: %w", err)
		}
	}

	hostSrv, err := grpcipc.NewServer() // what the plugin may call; the default policy: this user
	if err != nil {
		return err
	}
	defer hostSrv.Stop()
	echopb.RegisterEchoServer(hostSrv, echo{})

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.Command(plugin)
	child, err := grpcipc.StartChild(ctx, cmd, grpcipc.WithParentServer(hostSrv),
		grpcipc.WithChildOutput(slog.Default())) // the plugin's stdout and stderr, a log record per line
	if err != nil {
		return err
	}
	defer child.Close() // closes its connections, then SIGTERM, then kill after 5 s; says how the plugin ended
	fmt.Fprintf(out, "started the plugin: %s\n", child.Identity())

	// Negotiation: the newest service version this host knows that the
	// plugin serves.
	health := healthpb.NewHealthClient(child.Conn())
	var chosen string
	for _, svc := range []string{"greet.v2.Greeter", "greet.Greeter"} {
		st, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err == nil && st.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			chosen = svc
			break
		}
		fmt.Fprintf(out, "the plugin does not serve %s\n", svc)
	}
	if chosen != "greet.Greeter" {
		return fmt.Errorf("the plugin serves no version of the greeter this host knows")
	}
	reply, err := greetpb.NewGreeterClient(child.Conn()).SayHello(ctx, &greetpb.HelloRequest{Name: "gopher"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "the plugin says: %s\n", reply.GetMessage())
	fmt.Fprintf(out, "protocol: %s\n", child.Conn().Protocol())
	if err := child.Close(); err != nil {
		return err
	}
	fmt.Fprintln(out, "the plugin has exited")
	return nil
}
