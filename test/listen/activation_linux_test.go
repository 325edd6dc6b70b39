package listen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"golang.org/x/sys/unix"
)

func init() {
	// activated [allow PRINCIPAL]: takes the sockets handed over as systemd
	// does (LISTEN_FDS; LISTEN_PID is set here, as systemd sets it to the
	// pid it execs) and prints each one's address, or the error.
	testutil.RegisterHelper("activated", func(args []string) error {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		var opts []grpcipc.ListenOption
		if len(args) == 2 && args[0] == "allow" {
			who, err := grpcipc.ParsePrincipal(args[1])
			if err != nil {
				return err
			}
			p, err := grpcipc.AllowPolicy(who)
			if err != nil {
				return err
			}
			opts = append(opts, grpcipc.WithPolicy(p))
		}
		ls, err := grpcipc.ActivatedListeners(opts...)
		if err != nil {
			fmt.Println("error:", err)
			return nil
		}
		for _, l := range ls {
			fmt.Println("listener:", l.Addr())
			l.Close()
		}
		if os.Getenv("LISTEN_FDS") != "" {
			return errors.New("LISTEN_FDS is still set")
		}
		return nil
	})
}

// TestActivatedListeners: what systemd may hand over is checked: Unix
// stream sockets are served (a socket file others may write, or an
// abstract socket, under the default policy, with a warning), anything
// else is refused naming the descriptor.
func TestActivatedListeners(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	unixSock := func(name string, mode os.FileMode) *os.File {
		l, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, name), mode)
		f, err := l.(*net.UnixListener).File()
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false) // the socket file stays, as systemd's
		l.Close()
		return f
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcpFile, _ := tcp.(*net.TCPListener).File()
	abstract, err := net.Listen("unix", "@grpcipc-activated-"+filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer abstract.Close()
	abstractFile, _ := abstract.(*net.UnixListener).File()
	gram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "gram.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer gram.Close()
	gramFile, _ := gram.File()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	connectedFile := os.NewFile(uintptr(pair[0]), "connected")
	defer connectedFile.Close()
	defer unix.Close(pair[1])

	for _, tc := range []struct {
		name  string
		files []*os.File
		args  []string
		out   []string // in standard output
		warn  string   // in standard error, or "" for no warning
	}{
		{"a 0600 socket file", []*os.File{unixSock("a.sock", 0o600)}, nil, []string{"listener: " + filepath.Join(dir, "a.sock")}, ""},
		{"a 0666 socket file, same-user policy", []*os.File{unixSock("b.sock", 0o666)}, nil, []string{"listener: "}, "mode 0666"},
		{"a 0666 socket file, a policy for all", []*os.File{unixSock("c.sock", 0o666)}, []string{"allow", "*"}, []string{"listener: "}, ""},
		{"an abstract socket", []*os.File{abstractFile}, nil, []string{"listener: @grpcipc-activated-"}, "abstract socket has no file permissions"},
		{"a tcp socket", []*os.File{unixSock("d.sock", 0o600), tcpFile}, nil, []string{"error: grpcipc: activated socket 4", "is a tcp socket"}, ""},
		{"a datagram socket", []*os.File{gramFile}, nil, []string{"error: grpcipc: activated socket 3", "is not a listening stream socket"}, ""},
		{"nothing", nil, nil, []string{"error: " + grpcipc.ErrNotActivated.Error()}, ""},
		{"a connected socket", []*os.File{connectedFile}, nil, []string{"error: grpcipc: activated socket 3", "is not a listening stream socket"}, ""},
		{"LISTEN_FDS larger than what was handed over", []*os.File{unixSock("e.sock", 0o600)}, []string{"fds", "3"}, []string{"error: grpcipc: LISTEN_FDS=3, but descriptor 4"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := testutil.HelperCommand(t, os.Geteuid(), os.Getegid(), "activated", tc.args...)
			cmd.ExtraFiles = tc.files
			switch {
			case len(tc.args) == 2 && tc.args[0] == "fds":
				cmd.Env = append(cmd.Env, "LISTEN_FDS="+tc.args[1])
				cmd.Args = cmd.Args[:len(cmd.Args)-2]
			case len(tc.files) > 0:
				cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(tc.files)))
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %s%s", err, out, stderr.String())
			}
			rest := string(out)
			for _, w := range tc.out {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output %q lacks %q", out, w)
				}
				rest = rest[i+len(w):]
			}
			if tc.warn == "" && strings.Contains(stderr.String(), "WARN") {
				t.Errorf("a warning: %s", stderr.String())
			}
			if tc.warn != "" && !strings.Contains(stderr.String(), tc.warn) {
				t.Errorf("no warning %q: %s", tc.warn, stderr.String())
			}
		})
	}
}
