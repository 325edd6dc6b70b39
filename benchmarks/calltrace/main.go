// Command calltrace shows where a 1 KiB unary call's time goes, step by
// step, on grpcipc's fast path or a bare Unix socket: it runs a server in a
// child process and one caller in this one, both under runtime/trace, and
// lines the two traces up by their shared monotonic clock.
//
//	go run ./calltrace              # the fast path, step by step
//	go run ./calltrace --raw        # the bare socket's median, for scale
//
// Tracing slows every step a little; the table is a budget of the parts
// of a call, not its speed (grpcipc bench measures that). The steps are
// followed for the calls in which each side slept in the poller; a bare
// socket's fastest calls do not (the reply is there before its read), so
// --raw gives its median alone.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/trace"
	"slices"
	"time"

	"github.com/grpcipc/grpcipc"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const childEnv = "CALLTRACE_SERVER"

func main() {
	raw := flag.Bool("raw", false, "measure a bare Unix socket instead of the fast path")
	calls := flag.Int("calls", 5000, "calls traced (after 3,000 untraced)")
	flag.Parse()
	var err error
	if spec := os.Getenv(childEnv); spec != "" {
		err = serve(spec, *raw)
	} else {
		err = run(*raw, *calls)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "calltrace:", err)
		os.Exit(1)
	}
}

// run starts the server, calls it, and prints the budget.
func run(raw bool, calls int) error {
	dir, err := os.MkdirTemp("", "calltrace-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s.sock")
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{}
	if raw {
		args = append(args, "--raw")
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	ctl, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	ready, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Wait()
	defer ctl.Close()
	if _, err := io.ReadFull(ready, make([]byte, 1)); err != nil {
		return fmt.Errorf("the server did not start: %w", err)
	}

	call, closeClient, err := dial(sock, raw)
	if err != nil {
		return err
	}
	defer closeClient()
	for range 3000 {
		if err := call(); err != nil {
			return err
		}
	}
	clientTrace := filepath.Join(dir, "client.trace")
	f, err := os.Create(clientTrace)
	if err != nil {
		return err
	}
	if _, err := ctl.Write([]byte("t")); err != nil { // the server starts its trace
		return err
	}
	if _, err := io.ReadFull(ready, make([]byte, 1)); err != nil {
		return err
	}
	if err := trace.Start(f); err != nil {
		return err
	}
	lat := make([]time.Duration, 0, calls)
	for range calls {
		t0 := time.Now()
		if err := call(); err != nil {
			trace.Stop()
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	trace.Stop()
	f.Close()
	if _, err := ctl.Write([]byte("s")); err != nil { // the server stops its trace and exits
		return err
	}
	if _, err := io.ReadFull(ready, make([]byte, 1)); err != nil {
		return err
	}
	slices.Sort(lat)
	what := "grpcipc's fast path"
	if raw {
		what = "a bare Unix socket"
	}
	fmt.Printf("1 KiB unary calls over %s, one caller, traced: p50 %.1f µs\n", what, float64(lat[len(lat)/2].Nanoseconds())/1e3)
	if raw {
		return nil
	}
	fmt.Println()
	return budget(os.Stdout, clientTrace, filepath.Join(dir, "server.trace"))
}

// dial returns one call of the echo and a function that closes the client.
func dial(sock string, raw bool) (func() error, func(), error) {
	payload := make([]byte, 1<<10)
	if raw {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return nil, nil, err
		}
		buf := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
		buf = append(buf, payload...)
		in := make([]byte, len(buf))
		return func() error {
			if _, err := c.Write(buf); err != nil {
				return err
			}
			_, err := io.ReadFull(c, in)
			return err
		}, func() { c.Close() }, nil
	}
	cc, err := grpcipc.NewClient("unix://" + sock)
	if err != nil {
		return nil, nil, err
	}
	req, reply := &wrapperspb.BytesValue{Value: payload}, new(wrapperspb.BytesValue)
	return func() error {
		return cc.Invoke(context.Background(), "/calltrace.Echo/Echo", req, reply)
	}, func() { cc.Close() }, nil
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "calltrace.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
}

// serve is the child: it serves the echo in dir, says so with a byte on
// stdout, traces itself from "t" to "s" on stdin, and exits after "s".
func serve(dir string, raw bool) error {
	sock := filepath.Join(dir, "s.sock")
	if raw {
		l, err := net.Listen("unix", sock)
		if err != nil {
			return err
		}
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4+1<<10)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	} else {
		l, err := grpcipc.Listen(context.Background(), "unix://"+sock)
		if err != nil {
			return err
		}
		s, err := grpcipc.NewServer()
		if err != nil {
			return err
		}
		s.RegisterService(&echoDesc, struct{}{})
		go s.Serve(l)
	}
	os.Stdout.Write([]byte{'r'})
	var cmd [1]byte
	if _, err := io.ReadFull(os.Stdin, cmd[:]); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "server.trace"))
	if err != nil {
		return err
	}
	if err := trace.Start(f); err != nil {
		return err
	}
	os.Stdout.Write([]byte{'t'})
	io.ReadFull(os.Stdin, cmd[:])
	trace.Stop()
	f.Close()
	os.Stdout.Write([]byte{'s'})
	return nil
}
