// Command hello is a grpcipc server and client in one program: the server
// listens on this user's default endpoint and admits this user only, the
// client checks that the server runs as this user too, and the reply says
// who called, as the OS reported it. The README shows this file.
//
//	go run ./examples/hello
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity"
)

type greeter struct {
	greetpb.UnimplementedGreeterServer
}

func (greeter) SayHello(ctx context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	who := "unknown"
	if ai, ok := grpcipc.AuthInfoFromContext(ctx); ok && ai.Peer != nil {
		who = ai.Peer.String() // the caller, as the OS told it when it connected
	}
	return &greetpb.HelloReply{Message: fmt.Sprintf("Hello %s (%s)", req.GetName(), who)}, nil
}

func main() {
	ctx := context.Background()
	ep, err := grpcipc.DefaultEndpoint("hello-example") // e.g. unix:///run/user/1000/hello-example/hello-example.sock
	if err != nil {
		log.Fatal(err)
	}

	// The server: the socket is 0600; the default policy admits this user only.
	lis, err := grpcipc.Listen(ctx, ep.String())
	if err != nil {
		log.Fatal(err)
	}
	srv, err := grpcipc.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	greetpb.RegisterGreeterServer(srv, greeter{}) // generated code, unchanged
	identity.Register(srv)                        // grpcipc.v1.Identity: "who am I to you?"
	go srv.Serve(lis)                             // HTTP/2 and the fast path on one socket
	defer srv.Stop()                              // closes lis, which removes the socket

	// The client: offers the fast path, and checks the server's identity first.
	conn, err := grpcipc.NewClient(ep.String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	reply, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "gopher"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n(over %s, protocol %s)\n", reply.GetMessage(), ep, conn.Protocol())
}
