package files

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/wire"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// serve starts a server taking up to max files a call; it returns the
// endpoint.
func serve(t *testing.T, max int, g *readingGreeter) string {
	t.Helper()
	endpoint := testutil.Endpoint(t)
	srv, err := grpcipc.NewServer(grpcipc.WithMaxFilesPerCall(max))
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
	return endpoint
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// settleFiles waits until this process has at most want descriptors
// open: those a server received are closed off its reading goroutine.
func settleFiles(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for openFiles(t) > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open, %d before: the server leaked what it received (%s)", openFiles(t), want, fdNames())
		}
		time.Sleep(time.Millisecond)
	}
}

// pipeWith returns the read end of a pipe holding s (closed for writing).
func pipeWith(t *testing.T, s string) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(s)
	w.Close()
	mine = append(mine, r)
	t.Cleanup(func() { r.Close() })
	return r
}

// mine: the pipes made so far that this process still holds.
var mine []*os.File

// closeMine closes the pipes this process made: those sent are the
// receiver's to close.
func closeMine() {
	for _, f := range mine {
		f.Close()
	}
	mine = nil
}

func filesFrame(stream uint32, n int) []byte {
	return e2e.RawFrame(stream, wire.TypeFiles, 0, wire.AppendFiles(nil, n))
}

func helloRequest(t *testing.T, stream uint32) [][]byte {
	b, err := proto.Marshal(&greetpb.HelloRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{e2e.RawCall(stream), e2e.RawFrame(stream, wire.TypeMessage, 0, b), e2e.RawFrame(stream, wire.TypeHalfClose, 0, nil)}
}

// TestRawFilesReachHandler: a FILES frame before a CALL gives its
// descriptors to the call's handler, which reads what the client wrote.
func TestRawFilesReachHandler(t *testing.T) {
	g := &readingGreeter{}
	endpoint := serve(t, 2, g)
	rf := e2e.DialFast(t, endpoint)
	base := openFiles(t)
	for i, content := range []string{"from a pipe", "another"} {
		id := uint32(2*i + 1)
		rf.SendWithFiles(t, filesFrame(id, 2), pipeWith(t, content), pipeWith(t, "unread"))
		rf.Send(t, helloRequest(t, id)...)
		msg, tr := rf.Outcome(t, id)
		var reply greetpb.HelloReply
		if err := proto.Unmarshal(msg, &reply); err != nil || tr.Code != 0 || reply.Message != content {
			t.Fatalf("call %d: reply %q (%v), status %d %q", i, reply.Message, err, tr.Code, tr.Message)
		}
	}
	// A call without files on the same connection.
	rf.Send(t, helloRequest(t, 5)...)
	msg, _ := rf.Outcome(t, 5)
	var reply greetpb.HelloReply
	if proto.Unmarshal(msg, &reply); reply.Message != "no files" {
		t.Fatalf("a call without files: %q", reply.Message)
	}
	closeMine()
	settleFiles(t, base)
}

// TestRawFilesRefused: calls whose files the server does not take are
// refused before their handlers run, with the files closed, and the
// connection goes on; files sent where no frame announces them, or not
// as many as announced, end the connection, with the files closed.
func TestRawFilesRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		max   int
		send  func(t *testing.T, rf *e2e.RawFast)
		code  codes.Code // the call's status, if the connection goes on
		words string     // in the status or the connection's end
	}{
		{"a server that takes none", 0, func(t *testing.T, rf *e2e.RawFast) {
			rf.SendWithFiles(t, filesFrame(1, 1), pipeWith(t, "x"))
			rf.Send(t, helloRequest(t, 1)...)
		}, codes.FailedPrecondition, "it carries 1 file, and this server takes none"},
		{"more than the server takes", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.SendWithFiles(t, filesFrame(1, 3), pipeWith(t, "x"), pipeWith(t, "y"), pipeWith(t, "z"))
			rf.Send(t, helloRequest(t, 1)...)
		}, codes.FailedPrecondition, "it carries 3 files, and this server takes at most 2"},
		{"files on a PING", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.SendWithFiles(t, e2e.RawFrame(0, wire.TypePing, 0, []byte("12345678")), pipeWith(t, "x"))
		}, codes.OK, "no FILES frame began"},
		{"files on a CALL", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.SendWithFiles(t, e2e.RawCall(1), pipeWith(t, "x"))
		}, codes.OK, "no FILES frame began"},
		{"more than announced", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.SendWithFiles(t, filesFrame(1, 1), pipeWith(t, "x"), pipeWith(t, "y"))
		}, codes.OK, "announces 1 descriptors, and 2 arrived"},
		{"announced, none sent", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, filesFrame(1, 2))
		}, codes.OK, "none arrived with it"},
		{"files for another stream than the CALL's", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.SendWithFiles(t, filesFrame(3, 1), pipeWith(t, "x"))
			rf.Send(t, helloRequest(t, 1)...)
		}, codes.OK, "a FILES frame for stream 3, then a CALL on stream 1"},
		{"files for a stream already open", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.Send(t, e2e.RawCall(1))
			rf.SendWithFiles(t, filesFrame(1, 1), pipeWith(t, "x"))
		}, codes.OK, "not the next call's"},
		{"a FILES frame on stream 0", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.SendWithFiles(t, filesFrame(0, 1), pipeWith(t, "x"))
		}, codes.OK, "FILES frame on stream 0"},
		{"two FILES frames for one call", 2, func(t *testing.T, rf *e2e.RawFast) {
			rf.SendWithFiles(t, filesFrame(1, 1), pipeWith(t, "x"))
			rf.SendWithFiles(t, filesFrame(1, 1), pipeWith(t, "y"))
		}, codes.OK, "not the next call's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &readingGreeter{took: make(chan int, 1)}
			endpoint := serve(t, tc.max, g)
			rf := e2e.DialFast(t, endpoint)
			base := openFiles(t)
			tc.send(t, rf)
			if tc.code != codes.OK {
				_, tr := rf.Outcome(t, 1)
				if codes.Code(tr.Code) != tc.code || !strings.Contains(tr.Message, tc.words) {
					t.Fatalf("status %v %q, want %v saying %q", codes.Code(tr.Code), tr.Message, tc.code, tc.words)
				}
				select {
				case n := <-g.took:
					t.Fatalf("the handler ran (it took %d files)", n)
				default:
				}
				rf.Alive(t)
			} else {
				var goAway string
				closed, err := rf.Closed(5 * time.Second)
				if rf.GoAway != nil {
					goAway = rf.GoAway.Message
				}
				if !closed {
					t.Fatalf("the connection was not closed: %v", err)
				}
				if !strings.Contains(goAway, tc.words) {
					t.Errorf("the server's GOAWAY says %q, want %q", goAway, tc.words)
				}
			}
			closeMine()
			settleFiles(t, base)
		})
	}
}
