package testutil

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

var pipes atomic.Int64

func endpoint(t testing.TB) string {
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("npipe:grpcipc-test-%d-%d-%s", os.Getpid(), pipes.Add(1), name)
}
