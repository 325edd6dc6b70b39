package children

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
)

// TestChildPipeRefusesOthers: the pipe on which the child calls its parent
// admits the child's process only; another process (this one) that finds
// its name and connects is refused, and the child is then served.
func TestChildPipeRefusesOthers(t *testing.T) {
	ctx, cmd, goAhead, child := startCallingChild(t)

	var pipes []string
	for _, kv := range cmd.Env {
		if v, ok := strings.CutPrefix(kv, "GRPCIPC_CHILD="); ok {
			pipes = strings.Fields(v)[1:]
		}
	}
	if len(pipes) != 2 {
		t.Fatalf("GRPCIPC_CHILD names %v; want two pipes", pipes)
	}
	// A stranger on the parent's pipe: connected, then closed unanswered.
	stranger, err := grpcipc.Dial(ctx, pipes[1])
	if err != nil {
		t.Fatalf("dialling the parent's pipe: %v", err)
	}
	stranger.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := stranger.Read(make([]byte, 1)); err != io.EOF && n != 0 {
		t.Errorf("the stranger read %d bytes, %v; want the connection closed", n, err)
	}
	stranger.Close()

	fmt.Fprintln(goAhead, "go")
	reply, err := greetpb.NewGreeterClient(child.Conn()).SayHello(ctx, &greetpb.HelloRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("the parent sees pid %d over %s", cmd.Process.Pid, grpcipc.Inherited)
	if !strings.HasPrefix(reply.GetMessage(), want) {
		t.Errorf("the child says %q; want %q", reply.GetMessage(), want)
	}
	if err := child.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
