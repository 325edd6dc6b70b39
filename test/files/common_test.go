package files

import (
	"context"
	"io"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
)

// readingGreeter answers SayHello with what the first file the client
// sent holds, and closes the files it takes.
type readingGreeter struct {
	greetpb.UnimplementedGreeterServer
	took chan int // how many files each call took
}

func (g *readingGreeter) SayHello(ctx context.Context, _ *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	files := grpcipc.TakeFiles(ctx)
	if g.took != nil {
		g.took <- len(files)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) == 0 {
		return &greetpb.HelloReply{Message: "no files"}, nil
	}
	if again := grpcipc.TakeFiles(ctx); again != nil {
		return nil, io.ErrUnexpectedEOF
	}
	b, err := io.ReadAll(io.LimitReader(files[0], 1<<10))
	if err != nil {
		return nil, err
	}
	return &greetpb.HelloReply{Message: string(b)}, nil
}
