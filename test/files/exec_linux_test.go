package files

// Received descriptors are close-on-exec: a process that a server's
// handler (or a client) starts while it holds them inherits none.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc"
)

func init() {
	// list-fds: prints what the process's descriptors are, one a line.
	testutil.RegisterHelper("list-fds", func([]string) error {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return err
		}
		for _, e := range ents {
			l, _ := os.Readlink("/proc/self/fd/" + e.Name())
			fmt.Println(e.Name() + " " + l)
		}
		return nil
	})
}

// childFDs starts the list-fds helper and returns what it inherited.
func childFDs(t *testing.T) string {
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "list-fds")
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("list-fds: %v", err)
	}
	return string(out)
}

// pipeName is what /proc says a pipe is: "pipe:[inode]".
func pipeName(t *testing.T, f *os.File) string {
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("pipe:[%d]", fi.Sys().(*syscall.Stat_t).Ino)
}

// execGreeter starts a child before and after it takes the call's files,
// and sends the files back.
type execGreeter struct {
	greetpb.UnimplementedGreeterServer
	t        *testing.T
	mu       sync.Mutex
	children []string
}

func (g *execGreeter) SayHello(ctx context.Context, _ *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	before := childFDs(g.t)
	files := grpcipc.TakeFiles(ctx)
	after := childFDs(g.t)
	g.mu.Lock()
	g.children = append(g.children, before, after)
	g.mu.Unlock()
	err := grpcipc.SendFiles(ctx, files...)
	for _, f := range files {
		f.Close()
	}
	return &greetpb.HelloReply{}, err
}

// TestReceivedFilesCloseOnExec: children that a handler starts before and
// after it takes the call's files, while other calls' files are held,
// and that the client starts once it has the files the server sent
// back, inherit none of them.
func TestReceivedFilesCloseOnExec(t *testing.T) {
	g := &execGreeter{t: t}
	endpoint := testutil.Endpoint(t)
	srv, err := grpcipc.NewServer(grpcipc.WithMaxFilesPerCall(4))
	if err != nil {
		t.Fatal(err)
	}
	greetpb.RegisterGreeterServer(srv, g)
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })

	conn, err := grpcipc.NewClient(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := greetpb.NewGreeterClient(conn)
	var sent []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	var back []*os.File
	for range 4 {
		r1, r2 := pipeWith(t, "a"), pipeWith(t, "b")
		sent = append(sent, pipeName(t, r1), pipeName(t, r2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got []*os.File
			if _, err := client.SayHello(context.Background(), &greetpb.HelloRequest{}, grpcipc.WithFiles(r1, r2), grpc.CallOption(grpcipc.ReceiveFiles(&got))); err != nil {
				t.Error(err)
			}
			mu.Lock()
			back = append(back, got...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	closeMine()
	if len(back) != 8 {
		t.Fatalf("%d files came back, want 8", len(back))
	}
	children := append(g.children, childFDs(t))
	for _, f := range back {
		f.Close()
	}
	for _, c := range children {
		for _, p := range sent {
			if strings.Contains(c, p) {
				t.Errorf("a child inherited %s:\n%s", p, c)
			}
		}
	}
	t.Logf("%d children; one inherited:\n%s", len(children), children[len(children)-1])
}
