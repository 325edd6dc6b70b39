package files

// Files on StartChild's inherited connection.

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

// childEcho answers SayHello by sending back a sealed memory file that
// holds "child got: " and what the call's file held.
type childEcho struct {
	greetpb.UnimplementedGreeterServer
}

func (childEcho) SayHello(ctx context.Context, _ *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	files := grpcipc.TakeFiles(ctx)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) != 1 {
		return &greetpb.HelloReply{Message: "no file"}, nil
	}
	b, err := io.ReadAll(io.LimitReader(files[0], 1<<10))
	if err != nil {
		return nil, err
	}
	f, err := grpcipc.SealedFile("reply", append([]byte("child got: "), b...))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := grpcipc.SendFiles(ctx, f); err != nil {
		return nil, err
	}
	return &greetpb.HelloReply{Message: "sent"}, nil
}

func init() {
	// files-child: serves childEcho to the parent that started it with
	// StartChild, taking one file a call.
	testutil.RegisterHelper("files-child", func([]string) error {
		lis, err := grpcipc.ChildListener()
		if err != nil {
			return err
		}
		srv, err := grpcipc.NewServer(grpcipc.WithMaxFilesPerCall(1))
		if err != nil {
			return err
		}
		greetpb.RegisterGreeterServer(srv, childEcho{})
		srv.Serve(lis)
		return nil
	})
}

// TestFilesWithChild: a parent sends a pipe to a child it started with
// StartChild, over the inherited connection, and gets a sealed file back
// that holds what the child read; nothing is left open in the parent.
func TestFilesWithChild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := openFiles(t)
	cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "files-child")
	child, err := grpcipc.StartChild(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	client := greetpb.NewGreeterClient(child.Conn())
	for i, content := range []string{"one", "two", "three"} {
		var got []*os.File
		reply, err := client.SayHello(ctx, &greetpb.HelloRequest{}, grpcipc.WithFiles(pipeWith(t, content)), grpcipc.ReceiveFiles(&got))
		if err != nil || reply.GetMessage() != "sent" || len(got) != 1 {
			t.Fatalf("call %d: %q, %d files, %v", i, reply.GetMessage(), len(got), err)
		}
		m, err := grpcipc.MapFile(got[0])
		got[0].Close()
		if err != nil {
			t.Fatal(err)
		}
		if s := string(m.Bytes()); s != "child got: "+content {
			t.Errorf("call %d: the child's file holds %q", i, s)
		}
		m.Close()
	}
	if p := child.Conn().Protocol(); p != grpcipc.ProtocolFast {
		t.Errorf("the child's connection speaks %v", p)
	}
	closeMine()
	child.Close()
	settleFiles(t, base)
}
