package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
)

func init() {
	// impostor ENDPOINT: serves SayHello to anyone on ENDPOINT, prints
	// "ready", then "call METHOD" for every call that reaches it.
	testutil.RegisterHelper("impostor", func(args []string) error {
		p, err := grpcipc.AllowPolicy(grpcipc.Anyone())
		if err != nil {
			return err
		}
		l, err := grpcipc.Listen(context.Background(), args[0], grpcipc.WithPolicy(p))
		if err != nil {
			return err
		}
		s, err := grpcipc.NewServer(grpcipc.WithPolicy(p), grpcipc.WithUnaryInterceptor(
			func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				fmt.Println("call", info.FullMethod)
				return h(ctx, req)
			}))
		if err != nil {
			l.Close()
			return err
		}
		greetpb.RegisterGreeterServer(s, e2e.Greeter{})
		fmt.Println("ready")
		return s.Serve(l)
	})
}

// startImpostor runs a server as uid 65534 and returns the reader of its
// output after "ready".
func startImpostor(t *testing.T, endpoint string) *bufio.Reader {
	t.Helper()
	r := testutil.Start(t, testutil.HelperCommand(t, testutil.Nobody, testutil.Nobody, "impostor", endpoint))
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("impostor said %q, %v", line, err)
	}
	return r
}

func TestClientRefusesImpostor(t *testing.T) {
	testutil.RequireRoot(t)
	sticky := testutil.ShortTempDir(t)
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{
		"unix-abstract:" + testutil.AbstractName(t),
		"unix://" + filepath.Join(sticky, "s.sock"), // a /tmp-like directory the impostor may write to
	} {
		t.Run(strings.SplitN(endpoint, ":", 2)[0], func(t *testing.T) {
			out := startImpostor(t, endpoint)
			// nil: the default, same-user or root.
			for _, expect := range [][]grpcipc.Principal{nil, {grpcipc.Root()}, {grpcipc.UID(0), grpcipc.SameUser()}} {
				var opts []grpcipc.ClientOption
				wantExpected := "expected same-user or root (the default"
				if expect != nil {
					opts = append(opts, grpcipc.WithExpectedServer(expect...))
					names := make([]string, len(expect))
					for i, p := range expect {
						names[i] = p.String()
					}
					wantExpected = "expected " + strings.Join(names, " or ")
				}
				err := e2e.SayHello(t, endpoint, opts...)
				if err == nil {
					t.Fatalf("a client expecting %v called a server running as uid 65534", expect)
				}
				msg := err.Error()
				for _, want := range []string{"untrusted server", wantExpected} {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q does not say %q", msg, want)
					}
				}
				if !strings.Contains(msg, "uid 65534 (nobody)") && !strings.Contains(msg, "owned by uid 65534") {
					t.Errorf("error %q does not name the impostor", msg)
				}
			}
			// The same client expecting that user gets through: the check,
			// not the connection, refused it.
			nobody, err := grpcipc.ParsePrincipal("user:nobody")
			if err != nil {
				t.Fatal(err)
			}
			if err := e2e.SayHello(t, endpoint, grpcipc.WithExpectedServer(nobody)); err != nil {
				t.Fatalf("expecting nobody: %v", err)
			}
			line, _ := out.ReadString('\n')
			if line != "call /greet.Greeter/SayHello\n" {
				t.Errorf("the impostor's first call was %q; the refused clients must have sent it nothing", line)
			}
		})
	}
}

func TestClientFlagsWritableDirectory(t *testing.T) {
	base := testutil.ShortTempDir(t)
	dir := filepath.Join(base, "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	endpoint := "unix://" + filepath.Join(dir, "s.sock")
	e2e.StartServer(t, endpoint)
	if err := e2e.SayHello(t, endpoint, grpcipc.WithExpectedServer(grpcipc.SameUser())); err != nil {
		t.Fatalf("safe directories: %v", err)
	}
	for _, writable := range []string{dir, base} {
		if err := os.Chmod(writable, 0o777); err != nil {
			t.Fatal(err)
		}
		err := e2e.SayHello(t, endpoint, grpcipc.WithExpectedServer(grpcipc.SameUser()))
		if err == nil || !strings.Contains(err.Error(), "directory "+writable+" is writable by others (mode 0777)") {
			t.Errorf("socket under a world-writable %s: %v", writable, err)
		}
		if err := os.Chmod(writable, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	// Without an expectation the default (same-user or root) is checked;
	// "*" trusts any server, wherever its socket is.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := e2e.SayHello(t, endpoint); err == nil || !strings.Contains(err.Error(), "is writable by others (mode 0777)") {
		t.Errorf("no expectation, a world-writable socket directory: %v", err)
	}
	if err := e2e.SayHello(t, endpoint, grpcipc.WithExpectedServer(grpcipc.Anyone())); err != nil {
		t.Errorf("WithExpectedServer(\"*\"): %v", err)
	}
}

func TestExpectedServerOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		opt      grpcipc.ClientOption
		want     string
	}{
		{"unix:@x", grpcipc.WithExpectedServer(), "no principals"},
		{"unix:@x", grpcipc.WithExpectedServer(grpcipc.Principal{}), "the zero Principal names no one"},
		{"tcp://127.0.0.1:1", grpcipc.WithExpectedServer(grpcipc.Root()), "a tcp server has no OS identity"},
		{"unix:@x", grpcipc.WithPins(grpcipc.Pin{}), "the zero Pin names no certificate"},
		{"unix:@x", grpcipc.WithPins(), "no pins"},
		{"unix:@x", grpcipc.WithTLS(nil), "WithTLS(nil)"},
	} {
		if _, err := grpcipc.NewClient(tc.endpoint, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClient(%s, ...) = %v; want %q", tc.endpoint, err, tc.want)
		}
	}
	// Text is read before it becomes an option.
	if _, err := grpcipc.ParsePrincipal("usr:x"); err == nil || !strings.Contains(err.Error(), `unknown kind "usr"`) {
		t.Errorf(`ParsePrincipal("usr:x") = %v`, err)
	}
	if _, err := grpcipc.ParsePin("abc"); err == nil || !strings.Contains(err.Error(), "want 64 hex digits") {
		t.Errorf(`ParsePin("abc") = %v`, err)
	}
	if _, err := grpcipc.ServerOptions(grpcipc.WithTLS(&tls.Config{})); err == nil || !strings.Contains(err.Error(), "needs a certificate") {
		t.Errorf("ServerOptions(WithTLS without a certificate) = %v", err)
	}
	if _, err := grpcipc.NewServer(grpcipc.WithTLS(&tls.Config{})); err == nil || !strings.Contains(err.Error(), "needs a certificate") {
		t.Errorf("NewServer(WithTLS without a certificate) = %v", err)
	}
}

// TestExpectedServerExeOnPath: WithExpectedServer(all_of(uid, exe:)) on a
// socket path: the socket file's owner (a uid, with no executable) passes
// the file check, and the server process's executable decides once
// connected: this test binary is admitted, another file refused.
func TestExpectedServerExeOnPath(t *testing.T) {
	endpoint := "unix://" + filepath.Join(testutil.ShortTempDir(t), "s.sock")
	e2e.ServeGuarded(t, endpoint)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	uid := grpcipc.UID(os.Geteuid())
	good := grpcipc.AllOf(uid, e2e.MustPrincipal(t, "exe:"+self))
	if err := e2e.SayHello(t, endpoint, grpcipc.WithExpectedServer(good)); err != nil {
		t.Errorf("the server runs %s: %v", self, err)
	}
	bad := grpcipc.AllOf(uid, e2e.MustPrincipal(t, "exe:/bin/true"))
	err = e2e.SayHello(t, endpoint, grpcipc.WithExpectedServer(bad))
	if err == nil || !strings.Contains(err.Error(), "untrusted server") || !strings.Contains(err.Error(), "runs as pid") {
		t.Errorf("expecting /bin/true: %v, want the server process refused", err)
	}
	t.Logf("expecting /bin/true: %v", err)
}
