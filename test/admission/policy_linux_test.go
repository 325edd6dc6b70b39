package grpcipc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"google.golang.org/grpc"
)

// countingServer counts the calls that reached its handlers.
type countingServer struct {
	greetpb.UnimplementedGreeterServer
	identitypb.UnimplementedIdentityServer
	calls atomic.Int64
}

func (s *countingServer) SayHello(_ context.Context, req *greetpb.HelloRequest) (*greetpb.HelloReply, error) {
	s.calls.Add(1)
	return &greetpb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

func (s *countingServer) WhoAmI(ctx context.Context, _ *identitypb.WhoAmIRequest) (*identitypb.WhoAmIResponse, error) {
	s.calls.Add(1)
	return identity.WhoAmI(ctx), nil
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type guardedServer struct {
	endpoint string
	srv      *countingServer
	log      *syncBuffer
}

// testServer is a server the tests serve on: a grpcipc.Server, or a
// grpc.Server made with grpcipc.ServerOptions.
type testServer interface {
	grpc.ServiceRegistrar
	Serve(net.Listener) error
	Stop()
}

// serverKind makes a server that checks callers, with opts.
type serverKind struct {
	name string
	make func(t testing.TB, opts ...grpcipc.ServerOption) testServer
}

var (
	newServerKind = serverKind{"NewServer", func(t testing.TB, opts ...grpcipc.ServerOption) testServer {
		t.Helper()
		s, err := grpcipc.NewServer(opts...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}
	serverOptionsKind = serverKind{"ServerOptions", func(t testing.TB, opts ...grpcipc.ServerOption) testServer {
		t.Helper()
		return grpc.NewServer(serverOpts(t, opts...)...)
	}}
	// serverKinds: both servers that check callers, for the suites that
	// must hold for either.
	serverKinds = []serverKind{newServerKind, serverOptionsKind}
)

// serveGuarded serves the counting server, made by grpcipc.NewServer with
// opts (a policy, say) and logging to a buffer, on a listener that Listen
// makes on endpoint, given the policy among opts too so that the socket
// lets its callers in; for an endpoint that is a path, in a directory every
// user may enter.
func serveGuarded(t *testing.T, endpoint string, opts ...grpcipc.ServerOption) *guardedServer {
	t.Helper()
	return serveGuardedKind(t, newServerKind, endpoint, nil, opts...)
}

// serveGuardedKind is serveGuarded with a server of kind k and more Listen
// options.
func serveGuardedKind(t *testing.T, k serverKind, endpoint string, listenOpts []grpcipc.ListenOption, opts ...grpcipc.ServerOption) *guardedServer {
	t.Helper()
	for _, o := range opts {
		if p, ok := o.(grpcipc.PolicyOption); ok {
			listenOpts = append(listenOpts, p)
		}
	}
	l, err := grpcipc.Listen(context.Background(), endpoint, listenOpts...)
	if err != nil {
		t.Fatalf("Listen(%s): %v", endpoint, err)
	}
	return serveGuardedOn(t, k, l, endpoint, opts...)
}

// serveGuardedOn serves the counting server, made as k makes it with opts
// and logging to a buffer, on l.
func serveGuardedOn(t *testing.T, k serverKind, l net.Listener, endpoint string, opts ...grpcipc.ServerOption) *guardedServer {
	t.Helper()
	gs := &guardedServer{endpoint: endpoint, srv: &countingServer{}, log: &syncBuffer{}}
	opts = append(opts, grpcipc.WithLogger(slog.New(slog.NewTextHandler(gs.log, nil))))
	s := k.make(t, opts...)
	greetpb.RegisterGreeterServer(s, gs.srv)
	identitypb.RegisterIdentityServer(s, gs.srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(l)
	}()
	t.Cleanup(func() { s.Stop(); <-done })
	return gs
}

// sharedSocket is a socket path in a directory every user may enter.
func sharedSocket(t *testing.T) string {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return "unix://" + filepath.Join(dir, "s.sock")
}

// caller is who a helper runs as.
type caller struct {
	uid, gid int
	groups   []int
	exe      string // "" for the shared copy of the test binary
}

func (c caller) String() string {
	return fmt.Sprintf("uid %d gid %d groups %v exe %s", c.uid, c.gid, c.groups, filepath.Base(c.exe))
}

// call runs the call helper as c and returns what it got.
func call(t *testing.T, c caller, endpoint, method string) callResult {
	t.Helper()
	var cmd = testutil.HelperCommand(t, c.uid, c.gid, "call", endpoint, method)
	if c.exe != "" || c.groups != nil {
		exe := c.exe
		if exe == "" {
			exe = cmd.Path
		}
		cmd = testutil.HelperCommandAt(t, exe, c.uid, c.gid, c.groups, "call", endpoint, method)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("call helper as %v: %v", c, err)
	}
	var res callResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("call helper printed %q: %v", out, err)
	}
	return res
}

var (
	root   = caller{uid: 0, gid: 0}
	nobody = caller{uid: testutil.Nobody, gid: testutil.Nobody}
	other  = caller{uid: 12345, gid: 12345} // a uid with no user
)

func mustPolicy(t *testing.T, js string) *grpcipc.Policy {
	t.Helper()
	p, err := grpcipc.ParsePolicy([]byte(js))
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	return p
}

// Both servers that check callers, grpcipc.NewServer and a grpc.Server
// made with ServerOptions, serve the server's own user and refuse another,
// on a Listen listener and on a net.Listen one alike.
func TestSameUserServedOthersRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			for _, listener := range []string{"unix-abstract", "unix", "net.Listen"} {
				t.Run(listener, func(t *testing.T) {
					var gs *guardedServer
					switch listener {
					case "unix-abstract":
						// The abstract socket has no permissions.
						gs = serveGuardedKind(t, k, "unix-abstract:"+testutil.AbstractName(t), nil)
					case "unix":
						// The path is opened to everyone so that only the
						// peer check stands in the way.
						gs = serveGuardedKind(t, k, sharedSocket(t), []grpcipc.ListenOption{grpcipc.WithSocketMode(0o666)})
					case "net.Listen":
						// A listener grpcipc did not make: the server checks
						// its callers all the same.
						endpoint := sharedSocket(t)
						path := strings.TrimPrefix(endpoint, "unix://")
						l, err := net.Listen("unix", path)
						if err != nil {
							t.Fatal(err)
						}
						if err := os.Chmod(path, 0o666); err != nil {
							t.Fatal(err)
						}
						gs = serveGuardedOn(t, k, l, endpoint)
					}
					endpoint := gs.endpoint

					res := call(t, root, endpoint, "WhoAmI")
					if res.Code != "OK" {
						t.Fatalf("same-user caller: %s %s", res.Code, res.Message)
					}
					if res.Who.PID != int64(res.PID) || res.Who.UID != "0" || res.Who.GID != "0" || res.Who.User != "root" {
						t.Errorf("WhoAmI = %+v; want pid %d uid 0 gid 0 user root", res.Who, res.PID)
					}
					before := gs.srv.calls.Load()

					res = call(t, nobody, endpoint, "SayHello")
					if res.Code != "PermissionDenied" {
						t.Fatalf("uid 65534 got %s %q; want PermissionDenied", res.Code, res.Message)
					}
					wantMsg := fmt.Sprintf("pid %d uid 65534 (nobody) gid 65534", res.PID)
					if !strings.Contains(res.Message, wantMsg) {
						t.Errorf("refusal %q does not name the caller as %q", res.Message, wantMsg)
					}
					if got := gs.srv.calls.Load(); got != before {
						t.Errorf("a handler ran for a refused caller (%d calls, %d before)", got, before)
					}
					if log := gs.log.String(); !strings.Contains(log, "connection refused") || !strings.Contains(log, wantMsg) || !strings.Contains(log, "policy=same-user") {
						t.Errorf("the server log does not name the refused caller and the policy:\n%s", log)
					}
				})
			}
		})
	}
}

func TestPrincipalRulesAdmitExactlyWhoTheyName(t *testing.T) {
	testutil.RequireRoot(t)
	exeA := testutil.CopyExecutable(t)
	exeB := testutil.CopyExecutable(t)
	usersGroup := 100 // "users" in Debian's /etc/group
	tests := []struct {
		principal string
		admitted  []caller
		refused   []caller
	}{
		{"uid:65534", []caller{nobody}, []caller{root, other}},
		{"gid:12345", []caller{other, {uid: 65534, gid: 65534, groups: []int{12345}}}, []caller{nobody, root}},
		{"group:users", []caller{{uid: 12345, gid: 12345, groups: []int{usersGroup}}, {uid: 12346, gid: usersGroup}},
			[]caller{{uid: 12346, gid: 12346}, root}},
		{"user:nobody", []caller{nobody}, []caller{other, root}},
		{"all_of(uid:65534, exe:A)", []caller{{uid: 65534, gid: 65534, exe: exeA}},
			[]caller{{uid: 65534, gid: 65534, exe: exeB}, {uid: 0, gid: 0, exe: exeA}, nobody}},
		{"*", []caller{nobody, other, root}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.principal, func(t *testing.T) {
			var pr grpcipc.Principal
			if strings.HasPrefix(tt.principal, "all_of(") {
				pr = grpcipc.AllOf(mustPrincipal(t, "uid:65534"), mustPrincipal(t, "exe:"+exeA))
			} else {
				pr = mustPrincipal(t, tt.principal)
			}
			p, err := grpcipc.NewPolicy("test", nil, []grpcipc.Rule{{Name: "only", Principals: []grpcipc.Principal{pr}}})
			if err != nil {
				t.Fatal(err)
			}
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			serveGuarded(t, endpoint, grpcipc.WithPolicy(p))
			for _, c := range tt.admitted {
				if res := call(t, c, endpoint, "SayHello"); res.Code != "OK" {
					t.Errorf("%s should admit %v: got %s %s", tt.principal, c, res.Code, res.Message)
				}
			}
			for _, c := range tt.refused {
				if res := call(t, c, endpoint, "SayHello"); res.Code != "PermissionDenied" {
					t.Errorf("%s should refuse %v: got %s %s", tt.principal, c, res.Code, res.Message)
				}
			}
		})
	}
}

func mustPrincipal(t *testing.T, s string) grpcipc.Principal {
	t.Helper()
	p, err := grpcipc.ParsePrincipal(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPerMethodRulesAndDenyBeatsAllow(t *testing.T) {
	testutil.RequireRoot(t)
	p := mustPolicy(t, `{
		"name": "per-method",
		"deny_rules": [{"name": "not-12345", "source": {"principals": ["uid:12345"]}}],
		"allow_rules": [
			{"name": "hello-for-all", "source": {"principals": ["*"]}, "request": {"paths": ["/greet.Greeter/SayHello"]}},
			{"name": "root-only", "source": {"principals": ["uid:0"]}, "request": {"paths": ["/grpcipc.v1.Identity/*"]}}
		]}`)
	// Both servers that check callers apply per-method rules.
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			gs := serveGuardedKind(t, k, endpoint, nil, grpcipc.WithPolicy(p))
			for _, tc := range []struct {
				c      caller
				method string
				code   string
			}{
				{nobody, "SayHello", "OK"},
				{nobody, "WhoAmI", "PermissionDenied"},
				{root, "SayHello", "OK"},
				{root, "WhoAmI", "OK"},
				{other, "SayHello", "PermissionDenied"}, // allowed by hello-for-all, denied by not-12345
				{other, "WhoAmI", "PermissionDenied"},
			} {
				before := gs.srv.calls.Load()
				res := call(t, tc.c, endpoint, tc.method)
				if res.Code != tc.code {
					t.Errorf("%v calling %s: %s %q, want %s", tc.c, tc.method, res.Code, res.Message, tc.code)
				}
				ran := gs.srv.calls.Load() != before
				if ran != (tc.code == "OK") {
					t.Errorf("%v calling %s: handler ran = %v", tc.c, tc.method, ran)
				}
				if tc.code == "PermissionDenied" && tc.c.uid == nobody.uid && !strings.Contains(res.Message, "may not call /grpcipc.v1.Identity/WhoAmI") {
					t.Errorf("refusal %q does not name the method", res.Message)
				}
			}
			log := gs.log.String()
			for _, want := range []string{`rule=not-12345`, `method=/grpcipc.v1.Identity/WhoAmI`, `rule="(no allow rule matched)"`} {
				if !strings.Contains(log, want) {
					t.Errorf("server log lacks %s:\n%s", want, log)
				}
			}
		})
	}
}

// A grpc.Server made without ServerOptions checks no one: given a Listen
// listener, it has every connection closed at its first read, and the
// listener logs (through slog.Default, the server having no logger of
// grpcipc's) that grpcipc.NewServer is what serves it.
func TestPlainServerGetsNoConnections(t *testing.T) {
	log := &syncBuffer{}
	oldSlog, oldOut, oldFlags := slog.Default(), stdlog.Writer(), stdlog.Flags()
	slog.SetDefault(slog.New(slog.NewTextHandler(log, nil)))
	defer func() {
		slog.SetDefault(oldSlog)
		stdlog.SetOutput(oldOut) // SetDefault routed the log package to the handler
		stdlog.SetFlags(oldFlags)
	}()

	p := mustPolicy(t, `{"name": "m", "allow_rules": [{"name": "hello", "request": {"paths": ["/greet.Greeter/SayHello"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	l, err := grpcipc.Listen(context.Background(), endpoint, grpcipc.WithPolicy(p))
	if err != nil {
		t.Fatal(err)
	}
	srv := &countingServer{}
	s := grpc.NewServer() // no ServerOptions
	greetpb.RegisterGreeterServer(s, srv)
	identitypb.RegisterIdentityServer(s, srv)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	defer func() { s.Stop(); <-done }()

	conn := newClient(t, endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := identitypb.NewIdentityClient(conn).WhoAmI(ctx, &identitypb.WhoAmIRequest{}); err == nil {
		t.Error("a call the policy does not allow got through a server made without ServerOptions")
	}
	if _, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "x"}); err == nil {
		t.Error("a call got through a server made without ServerOptions, which checks no one")
	}
	if srv.calls.Load() != 0 {
		t.Error("a handler ran")
	}
	if got := settleLog(log, "grpcipc.NewServer"); !strings.Contains(got, "grpcipc.NewServer") || !strings.Contains(got, "level=ERROR") || !strings.Contains(got, endpoint) {
		t.Errorf("the log does not say, as an error naming the endpoint, that grpcipc.NewServer serves the listener:\n%s", got)
	}
}

func TestSocketPermissionsFollowPolicy(t *testing.T) {
	mk := func(principals ...string) *grpcipc.Policy {
		p, err := grpcipc.AllowPolicy(principals...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	usersGID := 100
	tests := []struct {
		name   string
		policy *grpcipc.Policy
		mode   os.FileMode
		gid    int // -1: the process's own
	}{
		{"default", nil, 0o600, -1},
		{"same user only", mk(), 0o600, -1},
		{"own uid", mk("uid:" + strconv.Itoa(os.Geteuid())), 0o600, -1},
		{"one group", mk("gid:" + strconv.Itoa(usersGID)), 0o660, usersGID},
		{"another uid", mk("uid:65534"), 0o666, -1},
		{"everyone", mk("*"), 0o666, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.gid >= 0 && os.Geteuid() != 0 {
				t.Skip("giving a socket to a group this user is not in needs root")
			}
			path := filepath.Join(testutil.ShortTempDir(t), "s.sock")
			var opts []grpcipc.ListenOption
			if tt.policy != nil {
				opts = append(opts, grpcipc.WithPolicy(tt.policy))
			}
			l, err := grpcipc.Listen(context.Background(), "unix://"+path, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.mode {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tt.mode)
			}
			gid := int(statGID(t, fi))
			want := tt.gid
			if want < 0 {
				want = os.Getegid()
			}
			if gid != want {
				t.Errorf("socket group %d, want %d", gid, want)
			}
		})
	}
}

func TestWithPolicyErrors(t *testing.T) {
	if _, err := grpcipc.Listen(context.Background(), "tcp://127.0.0.1:0", grpcipc.WithPolicy(grpcipc.SameUserPolicy())); err == nil || !strings.Contains(err.Error(), "tcp connections carry no OS identity") {
		t.Errorf("WithPolicy on tcp: %v", err)
	}
	if _, err := grpcipc.Listen(context.Background(), "unix-abstract:"+testutil.AbstractName(t), grpcipc.WithPolicy(nil)); err == nil {
		t.Error("WithPolicy(nil) accepted")
	}
}

func serverOpts(t testing.TB, opts ...grpcipc.ServerOption) []grpc.ServerOption {
	t.Helper()
	so, err := grpcipc.ServerOptions(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return so
}
