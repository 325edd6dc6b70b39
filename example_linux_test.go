package grpcipc_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"google.golang.org/grpc"
)

type greeter struct {
	greetpb.UnimplementedGreeterServer
}

func (greeter) SayHello(_ context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

// A server and a client on a Unix socket that only this user can connect to.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	endpoint := "unix://" + filepath.Join(dir, "app.sock")

	// Server: the socket is created 0600 before it accepts anyone, and
	// the server serves only this user's processes.
	lis, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := grpcipc.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	greetpb.RegisterGreeterServer(srv, greeter{})
	go srv.Serve(lis)
	defer srv.Stop() // closes the listener, which removes the socket

	// Client.
	conn, err := grpcipc.NewClient(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	reply, err := greetpb.NewGreeterClient(conn).SayHello(context.Background(), &greetpb.HelloRequest{Name: "gopher"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply.GetMessage())
	// Output: Hello gopher
}

// A grpc.Server of one's own checks callers as grpcipc.NewServer does, and
// speaks HTTP/2 only: grpcipc's client finds that out and speaks it too.
func ExampleServerOptions() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	endpoint := "unix://" + filepath.Join(dir, "app.sock")

	lis, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		log.Fatal(err)
	}
	opts, err := grpcipc.ServerOptions()
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	greetpb.RegisterGreeterServer(srv, greeter{})
	go srv.Serve(lis)
	defer srv.Stop()

	conn, err := grpcipc.NewClient(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	reply, err := greetpb.NewGreeterClient(conn).SayHello(context.Background(), &greetpb.HelloRequest{Name: "gopher"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply.GetMessage(), "over", conn.Protocol())
	// Output: Hello gopher over http2
}

func ExampleParseEndpoint() {
	for _, s := range []string{"unix:/run/app/app.sock", "unix:@app", `\\.\pipe\app`, "localhost:50051"} {
		ep, err := grpcipc.ParseEndpoint(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%-22s %-14s %s\n", s, ep.Transport, ep)
	}
	// Output:
	// unix:/run/app/app.sock unix           unix:///run/app/app.sock
	// unix:@app              unix-abstract  unix-abstract:app
	// \\.\pipe\app           npipe          npipe:app
	// localhost:50051        tcp            tcp://localhost:50051
}

// A handler reads the caller's OS identity.
func ExampleAuthInfoFromContext() {
	handler := func(ctx context.Context) string {
		ai, ok := grpcipc.AuthInfoFromContext(ctx)
		if !ok || ai.Peer == nil {
			return "unknown caller"
		}
		uid, _ := ai.Peer.UID()
		pid, _ := ai.Peer.PID()
		return fmt.Sprintf("uid %d, pid %d, over %s", uid, pid, ai.Transport)
	}
	_ = handler
}

// A policy file: anyone may check health, the server's user and the wheel
// group may do the rest.
func ExampleParsePolicy() {
	p, err := grpcipc.ParsePolicy([]byte(`{
		"name": "myd",
		"allow_rules": [
			{"name": "health", "source": {"principals": ["*"]}, "request": {"paths": ["/grpc.health.v1.Health/*"]}},
			{"name": "admins", "source": {"principals": ["same-user", "gid:0"]}}
		]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Name())
	_, err = grpcipc.ParsePolicy([]byte(`{"name": "bad", "allow_rules": [{"name": "a", "source": {"principals": ["usr:x"]}}]}`))
	fmt.Println(err)
	// Output:
	// myd
	// grpcipc: invalid policy: allow_rules[0].source.principals[0]: "usr:x": unknown kind "usr" (want uid, gid, user, group, sid, exe, cgroup, unit, user-unit, label, same-user, root, system or *)
}

// fileGreeter answers with the first line of the file the client sent.
type fileGreeter struct {
	greetpb.UnimplementedGreeterServer
}

func (fileGreeter) SayHello(ctx context.Context, _ *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	files := grpcipc.TakeFiles(ctx) // the handler's now
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) != 1 {
		return nil, fmt.Errorf("want one file, got %d", len(files))
	}
	m, err := grpcipc.MapFile(files[0]) // refused unless sealed
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return &greetpb.HelloReply{Message: fmt.Sprintf("read %d bytes in place: %q", len(m.Bytes()), m.Bytes())}, nil
}

// A call that carries a sealed memory file, which the server reads in
// place: nothing of it goes through the socket.
func ExampleWithFiles() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	endpoint := "unix://" + filepath.Join(dir, "app.sock")

	lis, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := grpcipc.NewServer(grpcipc.WithMaxFilesPerCall(1)) // none by default
	if err != nil {
		log.Fatal(err)
	}
	greetpb.RegisterGreeterServer(srv, fileGreeter{})
	go srv.Serve(lis)
	defer srv.Stop()

	conn, err := grpcipc.NewClient(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	f, err := grpcipc.SealedFile("greeting", []byte("hello, in shared memory"))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close() // the server has its own
	reply, err := greetpb.NewGreeterClient(conn).SayHello(context.Background(), &greetpb.HelloRequest{}, grpcipc.WithFiles(f))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply.GetMessage())
	// Output: read 23 bytes in place: "hello, in shared memory"
}
