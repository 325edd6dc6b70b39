// Package client tests grpcipc's client end to end: NewClient and Dial
// over every transport, options, what grpc.ClientConn brings (state,
// retries, keepalive), the client's check of the server, and reconnects.
package client

import (
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// TestMain runs a helper process when asked to, or the tests and a check
// for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
