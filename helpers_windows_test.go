package grpcipc

import (
	"context"
	"net"
	"testing"
	"time"
)

// sendOnce has l's next connection receive "ok", and checks that a client
// dialing endpoint reads it: the listener serves.
func sendOnce(t *testing.T, l net.Listener, endpoint string) {
	t.Helper()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	c, err := Dial(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Errorf("read %q, %v", buf, err)
	}
}
