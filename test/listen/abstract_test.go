package listen

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
)

func TestAbstractInUse(t *testing.T) {
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	if _, err := grpcipc.ParseEndpoint(endpoint); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this OS has no abstract sockets: %v", err)
	}
	l, err := grpcipc.Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l2, err := grpcipc.Listen(context.Background(), endpoint)
	if err == nil {
		l2.Close()
		t.Fatal("a second Listen on a bound abstract name succeeded")
	}
	if !errors.Is(err, grpcipc.ErrAddressInUse) || !strings.Contains(err.Error(), endpoint) {
		t.Errorf("error = %v; want ErrAddressInUse naming %s", err, endpoint)
	}
	// Raw round trip on the abstract socket.
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := grpcipc.Dial(e2e.Context(t), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Errorf("read %q, %v", buf, err)
	}
	if _, ok := c.(*net.UnixConn); !ok {
		t.Errorf("Dial returned a %T, want *net.UnixConn", c)
	}
}
