package files

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

// TestClosedWhileSent: a file closed by another goroutine while its call
// is made (and cancelled, at times), as new files take descriptor numbers
// that come free, never reaches the server as another file: each call
// either fails or the handler reads what the caller's own pipe held.
func TestClosedWhileSent(t *testing.T) {
	endpoint := serve(t, 1, &readingGreeter{})
	conn := e2e.NewClient(t, endpoint)
	client := greetpb.NewGreeterClient(conn)
	if _, err := client.SayHello(e2e.Context(t), &greetpb.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	base := openFiles(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, failed int
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				want := fmt.Sprintf("worker %d call %d", w, i)
				r, pw, err := os.Pipe()
				if err != nil {
					t.Error(err)
					return
				}
				pw.WriteString(want)
				pw.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if i%3 == 0 {
					go func() { time.Sleep(time.Duration(i%50) * time.Microsecond); cancel() }()
				}
				go r.Close() // while the call dups it, or after
				reply, err := client.SayHello(ctx, &greetpb.HelloRequest{}, grpcipc.WithFiles(r))
				cancel()
				mu.Lock()
				if err != nil {
					failed++
				} else {
					ok++
				}
				mu.Unlock()
				if err == nil && reply.GetMessage() != want {
					t.Errorf("the server read %q, want %q", reply.GetMessage(), want)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d calls read the caller's own pipe, %d failed", ok, failed)
	settleFiles(t, base)
}
