package fastpath

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPreferContext: a call that failed after its deadline passed fails
// with DeadlineExceeded, whatever the server's handler made of its own
// deadline (health Watch answers Canceled); a live call keeps its status.
func TestPreferContext(t *testing.T) {
	server := status.Error(codes.Canceled, "Stream has ended.")
	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	if got := status.Code(preferContext(past, server)); got != codes.DeadlineExceeded {
		t.Errorf("after the deadline: %v; want DeadlineExceeded", got)
	}
	live, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	defer cancel2()
	if got := preferContext(live, server); got != server {
		t.Errorf("before the deadline: %v; want the server's status", got)
	}
	cancelled, cancel3 := context.WithCancel(context.Background())
	cancel3()
	if got := status.Code(preferContext(cancelled, status.Error(codes.Unavailable, "x"))); got != codes.Canceled {
		t.Errorf("cancelled: %v; want Canceled", got)
	}
	if got := preferContext(past, nil); got != nil {
		t.Errorf("a call that succeeded: %v", got)
	}
}
