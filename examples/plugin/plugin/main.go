// Command plugin is the plugin of examples/plugin: started by the host
// over an inherited connection, it serves greet.Greeter to the host and
// calls back the host's grpcipc.examples.v1.Echo while answering. Run it
// through the host: go run ./examples/plugin/host
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/echopb"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

type greeter struct {
	greetpb.UnimplementedGreeterServer
	host echopb.EchoClient
}

// SayHello asks the host to echo the name back, then greets.
func (g greeter) SayHello(ctx context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	var p peer.Peer
	echoed, err := g.host.Say(ctx, &echopb.EchoRequest{Text: req.GetName()}, grpc.Peer(&p))
	if err != nil {
		return nil, fmt.Errorf("calling the host back: %w", err)
	}
	host := "the host"
	if ai, ok := grpcipc.AuthInfoFromPeer(&p); ok && ai.Peer != nil {
		host = "the host (" + ai.Peer.String() + ")"
	}
	return &greetpb.HelloReply{Message: fmt.Sprintf("Hello %s, from plugin pid %d; %s echoed the name", echoed.GetText(), os.Getpid(), host)}, nil
}

func main() {
	lis, err := grpcipc.ChildListener() // the host's connection, inherited
	if errors.Is(err, grpcipc.ErrNotChild) {
		fmt.Fprintln(os.Stderr, "plugin: this program is started by its host: go run ./examples/plugin/host")
		os.Exit(2)
	}
	if err != nil {
		log.Fatal(err)
	}
	host, err := grpcipc.ParentConn() // the host's services, on a second inherited connection
	if err != nil {
		log.Fatal(err)
	}
	defer host.Close()
	srv, err := grpcipc.NewServer() // the default policy: the host must run as this user
	if err != nil {
		log.Fatal(err)
	}
	greetpb.RegisterGreeterServer(srv, greeter{host: echopb.NewEchoClient(host)})
	// What this plugin speaks, for the host to choose from (versioned
	// service names take go-plugin's protocol versions' place).
	hs := health.NewServer()
	hs.SetServingStatus("greet.Greeter", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	// Serve returns when the host closes the connection or dies: then so
	// does the plugin.
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpcipc.ErrPeerGone) {
		log.Fatal(err)
	}
}
