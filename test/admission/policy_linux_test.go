package admission

import (
	"context"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/examples/greetpb"
	"github.com/grpcipc/grpcipc/identity/identitypb"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/test/internal/e2e"
	"google.golang.org/grpc"
)

// Both servers that check callers, grpcipc.NewServer and a grpc.Server
// made with ServerOptions, serve the server's own user and refuse another,
// on a Listen listener and on a net.Listen one alike.
func TestSameUserServedOthersRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, k := range e2e.ServerKinds {
		t.Run(k.Name, func(t *testing.T) {
			for _, listener := range []string{"unix-abstract", "unix", "net.Listen"} {
				t.Run(listener, func(t *testing.T) {
					var gs *e2e.GuardedServer
					switch listener {
					case "unix-abstract":
						// The abstract socket has no permissions.
						gs = e2e.ServeGuardedKind(t, k, "unix-abstract:"+testutil.AbstractName(t), nil)
					case "unix":
						// The path is opened to everyone so that only the
						// peer check stands in the way.
						gs = e2e.ServeGuardedKind(t, k, e2e.SharedSocket(t), []grpcipc.ListenOption{grpcipc.WithSocketMode(0o666)})
					case "net.Listen":
						// A listener grpcipc did not make: the server checks
						// its callers all the same.
						endpoint := e2e.SharedSocket(t)
						path := strings.TrimPrefix(endpoint, "unix://")
						l, err := net.Listen("unix", path)
						if err != nil {
							t.Fatal(err)
						}
						if err := os.Chmod(path, 0o666); err != nil {
							t.Fatal(err)
						}
						gs = e2e.ServeGuardedOn(t, k, l, endpoint)
					}
					endpoint := gs.Endpoint

					res := e2e.Call(t, e2e.Root, endpoint, "WhoAmI")
					if res.Code != "OK" {
						t.Fatalf("same-user caller: %s %s", res.Code, res.Message)
					}
					if res.Who.PID != int64(res.PID) || res.Who.UID != "0" || res.Who.GID != "0" || res.Who.User != "root" {
						t.Errorf("WhoAmI = %+v; want pid %d uid 0 gid 0 user root", res.Who, res.PID)
					}
					before := gs.Srv.Calls.Load()

					res = e2e.Call(t, e2e.Nobody, endpoint, "SayHello")
					if res.Code != "PermissionDenied" {
						t.Fatalf("uid 65534 got %s %q; want PermissionDenied", res.Code, res.Message)
					}
					wantMsg := fmt.Sprintf("pid %d uid 65534 (nobody) gid 65534", res.PID)
					if !strings.Contains(res.Message, wantMsg) {
						t.Errorf("refusal %q does not name the caller as %q", res.Message, wantMsg)
					}
					if got := gs.Srv.Calls.Load(); got != before {
						t.Errorf("a handler ran for a refused caller (%d calls, %d before)", got, before)
					}
					if log := gs.Log.String(); !strings.Contains(log, "connection refused") || !strings.Contains(log, wantMsg) || !strings.Contains(log, "policy=same-user") {
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
		admitted  []e2e.Caller
		refused   []e2e.Caller
	}{
		{"uid:65534", []e2e.Caller{e2e.Nobody}, []e2e.Caller{e2e.Root, e2e.Other}},
		{"gid:12345", []e2e.Caller{e2e.Other, {UID: 65534, GID: 65534, Groups: []int{12345}}}, []e2e.Caller{e2e.Nobody, e2e.Root}},
		{"group:users", []e2e.Caller{{UID: 12345, GID: 12345, Groups: []int{usersGroup}}, {UID: 12346, GID: usersGroup}},
			[]e2e.Caller{{UID: 12346, GID: 12346}, e2e.Root}},
		{"user:nobody", []e2e.Caller{e2e.Nobody}, []e2e.Caller{e2e.Other, e2e.Root}},
		{"all_of(uid:65534, exe:A)", []e2e.Caller{{UID: 65534, GID: 65534, Exe: exeA}},
			[]e2e.Caller{{UID: 65534, GID: 65534, Exe: exeB}, {UID: 0, GID: 0, Exe: exeA}, e2e.Nobody}},
		{"*", []e2e.Caller{e2e.Nobody, e2e.Other, e2e.Root}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.principal, func(t *testing.T) {
			var pr grpcipc.Principal
			if strings.HasPrefix(tt.principal, "all_of(") {
				pr = grpcipc.AllOf(e2e.MustPrincipal(t, "uid:65534"), e2e.MustPrincipal(t, "exe:"+exeA))
			} else {
				pr = e2e.MustPrincipal(t, tt.principal)
			}
			p, err := grpcipc.NewPolicy("test", nil, []grpcipc.Rule{{Name: "only", Principals: []grpcipc.Principal{pr}}})
			if err != nil {
				t.Fatal(err)
			}
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			e2e.ServeGuarded(t, endpoint, grpcipc.WithPolicy(p))
			for _, c := range tt.admitted {
				if res := e2e.Call(t, c, endpoint, "SayHello"); res.Code != "OK" {
					t.Errorf("%s should admit %v: got %s %s", tt.principal, c, res.Code, res.Message)
				}
			}
			for _, c := range tt.refused {
				if res := e2e.Call(t, c, endpoint, "SayHello"); res.Code != "PermissionDenied" {
					t.Errorf("%s should refuse %v: got %s %s", tt.principal, c, res.Code, res.Message)
				}
			}
		})
	}
}

func TestPerMethodRulesAndDenyBeatsAllow(t *testing.T) {
	testutil.RequireRoot(t)
	p := e2e.MustPolicy(t, `{
		"name": "per-method",
		"deny_rules": [{"name": "not-12345", "source": {"principals": ["uid:12345"]}}],
		"allow_rules": [
			{"name": "hello-for-all", "source": {"principals": ["*"]}, "request": {"paths": ["/greet.Greeter/SayHello"]}},
			{"name": "root-only", "source": {"principals": ["uid:0"]}, "request": {"paths": ["/grpcipc.v1.Identity/*"]}}
		]}`)
	// Both servers that check callers apply per-method rules.
	for _, k := range e2e.ServerKinds {
		t.Run(k.Name, func(t *testing.T) {
			endpoint := "unix-abstract:" + testutil.AbstractName(t)
			gs := e2e.ServeGuardedKind(t, k, endpoint, nil, grpcipc.WithPolicy(p))
			for _, tc := range []struct {
				c      e2e.Caller
				method string
				code   string
			}{
				{e2e.Nobody, "SayHello", "OK"},
				{e2e.Nobody, "WhoAmI", "PermissionDenied"},
				{e2e.Root, "SayHello", "OK"},
				{e2e.Root, "WhoAmI", "OK"},
				{e2e.Other, "SayHello", "PermissionDenied"}, // allowed by hello-for-all, denied by not-12345
				{e2e.Other, "WhoAmI", "PermissionDenied"},
			} {
				before := gs.Srv.Calls.Load()
				res := e2e.Call(t, tc.c, endpoint, tc.method)
				if res.Code != tc.code {
					t.Errorf("%v calling %s: %s %q, want %s", tc.c, tc.method, res.Code, res.Message, tc.code)
				}
				ran := gs.Srv.Calls.Load() != before
				if ran != (tc.code == "OK") {
					t.Errorf("%v calling %s: handler ran = %v", tc.c, tc.method, ran)
				}
				if tc.code == "PermissionDenied" && tc.c.UID == e2e.Nobody.UID && !strings.Contains(res.Message, "may not call /grpcipc.v1.Identity/WhoAmI") {
					t.Errorf("refusal %q does not name the method", res.Message)
				}
			}
			log := gs.Log.String()
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
	log := &e2e.SyncBuffer{}
	oldSlog, oldOut, oldFlags := slog.Default(), stdlog.Writer(), stdlog.Flags()
	slog.SetDefault(slog.New(slog.NewTextHandler(log, nil)))
	defer func() {
		slog.SetDefault(oldSlog)
		stdlog.SetOutput(oldOut) // SetDefault routed the log package to the handler
		stdlog.SetFlags(oldFlags)
	}()

	p := e2e.MustPolicy(t, `{"name": "m", "allow_rules": [{"name": "hello", "request": {"paths": ["/greet.Greeter/SayHello"]}}]}`)
	endpoint := "unix-abstract:" + testutil.AbstractName(t)
	l, err := grpcipc.Listen(context.Background(), endpoint, grpcipc.WithPolicy(p))
	if err != nil {
		t.Fatal(err)
	}
	srv := &e2e.CountingServer{}
	s := grpc.NewServer() // no ServerOptions
	greetpb.RegisterGreeterServer(s, srv)
	identitypb.RegisterIdentityServer(s, srv)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	defer func() { s.Stop(); <-done }()

	conn := e2e.NewClient(t, endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := identitypb.NewIdentityClient(conn).WhoAmI(ctx, &identitypb.WhoAmIRequest{}); err == nil {
		t.Error("a call the policy does not allow got through a server made without ServerOptions")
	}
	if _, err := greetpb.NewGreeterClient(conn).SayHello(ctx, &greetpb.HelloRequest{Name: "x"}); err == nil {
		t.Error("a call got through a server made without ServerOptions, which checks no one")
	}
	if srv.Calls.Load() != 0 {
		t.Error("a handler ran")
	}
	if got := e2e.SettleLog(log, "grpcipc.NewServer"); !strings.Contains(got, "grpcipc.NewServer") || !strings.Contains(got, "level=ERROR") || !strings.Contains(got, endpoint) {
		t.Errorf("the log does not say, as an error naming the endpoint, that grpcipc.NewServer serves the listener:\n%s", got)
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
