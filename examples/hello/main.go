// Command hello is a grpcipc server and client in a few lines: the server
// listens on this user's default endpoint, the client calls it, and the
// server tells the client who it is (its pid, uid and executable, as the
// OS reported them).
//
//	go run ./examples/hello
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/pb/greetpb"
)

// greeter answers with the caller's OS identity.
type greeter struct {
	greetpb.UnimplementedGreeterServer
}

func (greeter) SayHello(ctx context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	who := "an unknown caller"
	if ai, ok := grpcipc.AuthInfoFromContext(ctx); ok && ai.Peer != nil {
		who = ai.Peer.String()
		if exe, ok := ai.Peer.Executable(); ok {
			who += ", running " + exe
		}
	}
	return &greetpb.HelloReply{Message: fmt.Sprintf("Hello %s, you are %s", req.GetName(), who)}, nil
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) error {
	// The server: this user's default endpoint, only this user admitted.
	ep, err := grpcipc.DefaultEndpoint("hello-example")
	if err != nil {
		return err
	}
	lis, err := grpcipc.Listen(ctx, ep.String())
	if err != nil {
		return err
	}
	srv, err := grpcipc.NewServer()
	if err != nil {
		lis.Close()
		return err
	}
	greetpb.RegisterGreeterServer(srv, greeter{})
	go srv.Serve(lis)
	defer srv.Stop() // closes the listener, which removes the socket

	// The client: the same endpoint, and it checks the server runs as
	// this user too.
	conn, err := grpcipc.NewClient(ep.String(), grpcipc.WithExpectedServer("same-user"))
	if err != nil {
		return err
	}
	defer conn.Close()
	reply, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "gopher"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "server on %s says: %s\n", ep, reply.GetMessage())
	return nil
}
