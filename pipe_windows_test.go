package grpcipc

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"github.com/grpcipc/grpcipc/internal/winpipe"
	"golang.org/x/sys/windows"
)

func TestPipeSecondServerRefused(t *testing.T) {
	endpoint := testutil.Endpoint(t)
	l, err := Listen(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l2, err := Listen(context.Background(), endpoint)
	if err == nil {
		l2.Close()
		t.Fatal("a second server took a pipe name a live server holds")
	}
	if !errors.Is(err, ErrAddressInUse) || !strings.Contains(err.Error(), endpoint) {
		t.Errorf("error = %v; want ErrAddressInUse naming %s", err, endpoint)
	}
	// The first server still serves.
	sendOnce(t, l, endpoint)
}

func TestPipeSDDL(t *testing.T) {
	self := identity{sid: "S-1-5-21-1-2-3-1001"}
	mk := func(principals ...string) *Policy {
		ps := make([]Principal, len(principals))
		for i, s := range principals {
			ps[i] = mustParsePrincipal(t, s)
		}
		p, err := AllowPolicy(ps...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const base = "D:P(D;;GA;;;NU)(A;;GA;;;S-1-5-21-1-2-3-1001)"
	for _, tc := range []struct {
		name string
		p    *Policy
		want string
	}{
		{"same-user", SameUserPolicy(), base},
		{"a SID", mk("sid:S-1-5-32-545"), base + "(A;;0x12018b;;;S-1-5-32-545)"},
		{"system", mk("system"), base + "(A;;0x12018b;;;SY)"},
		{"anyone", mk("*"), base + "(A;;0x12018b;;;WD)"},
		{"a SID's executable", allOf(t, "sid:S-1-5-32-545", `exe:C:\bin\x.exe`), base + "(A;;0x12018b;;;S-1-5-32-545)"},
		{"unix ids add nothing", mk("uid:0", "gid:5"), base},
	} {
		got, err := pipeSDDL(tc.p, self)
		if err != nil || got != tc.want {
			t.Errorf("%s: pipeSDDL = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// The pipe really has it: read the DACL back.
	endpoint := testutil.Endpoint(t)
	l, err := Listen(context.Background(), endpoint, WithPolicy(mk("sid:S-1-5-32-545")))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Reading the DACL by name opens an instance: have one waiting.
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	ep, _ := ParseEndpoint(endpoint)
	sd, err := windows.GetNamedSecurityInfo(ep.pipePath(), windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatalf("reading the pipe's DACL: %v", err)
	}
	me, _ := selfIdentity()
	s := sd.String()
	for _, ace := range []string{"(D;;GA;;;NU)", "(A;;GA;;;" + me.sid + ")", "S-1-5-32-545"} {
		if !strings.Contains(s, ace) && !strings.Contains(s, strings.Replace(ace, "S-1-5-32-545", "BU", 1)) {
			t.Errorf("the pipe's DACL %s lacks %s", s, ace)
		}
	}
}

func TestPipeDACLEnforced(t *testing.T) {
	if winpipe.UnderWine() {
		t.Skip("Wine does not enforce named-pipe DACLs (anyone connects); this runs on real Windows")
	}
	// A pipe whose DACL admits only SYSTEM: this (non-SYSTEM) process may
	// not open it.
	me, _ := selfIdentity()
	if me.sid == sidLocalSystem {
		t.Skip("running as SYSTEM, whom the DACL admits")
	}
	ep, _ := ParseEndpoint(testutil.Endpoint(t))
	inner, err := winpipe.Listen(ep.pipePath(), "D:P(A;;GA;;;SY)")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	c, err := Dial(context.Background(), ep.String())
	if err == nil {
		c.Close()
		t.Fatal("a client outside the DACL opened the pipe")
	}
	if !errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		t.Errorf("error = %v; want access denied", err)
	}
}

// TestPipeNoImpersonation: a server cannot act as a grpcipc client, which
// connects at the Anonymous level; with WithPipeIdentification it gets an
// Identification-level token at most.
func TestPipeNoImpersonation(t *testing.T) {
	if winpipe.UnderWine() {
		// Measured under Wine 8.0: level 2 (Impersonation) for a client
		// that asked for Anonymous.
		t.Skip("Wine ignores the client's SECURITY_SQOS_PRESENT impersonation level; this runs on real Windows")
	}
	for _, tc := range []struct {
		name     string
		identify bool
		want     uint32 // the most the server may get
	}{
		{"default anonymous", false, windows.SecurityAnonymous},
		{"identification on request", true, windows.SecurityIdentification},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, _ := ParseEndpoint(testutil.Endpoint(t))
			l, err := Listen(context.Background(), ep.String())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}()
			c, err := dialEndpoint(context.Background(), ep, tc.identify)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc := <-accepted
			if sc == nil {
				t.Fatal("accept failed")
			}
			defer sc.Close()
			h := windows.Handle(sc.(*unservedConn).Conn.(interface{ Fd() uintptr }).Fd())
			level, ok := impersonationLevel(t, h)
			if !ok {
				t.Logf("impersonation gave no token at all")
				return
			}
			if level > tc.want {
				t.Errorf("the server impersonated the client at level %d; at most %d allowed", level, tc.want)
			}
			t.Logf("impersonation level %d", level)
		})
	}
}

var procImpersonateNamedPipeClient = windows.NewLazySystemDLL("advapi32.dll").NewProc("ImpersonateNamedPipeClient")

// impersonationLevel impersonates the client of pipe h on this thread and
// reports the level of the token it got (false: none, as for Anonymous).
func impersonationLevel(t *testing.T, h windows.Handle) (uint32, bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r, _, err := procImpersonateNamedPipeClient.Call(uintptr(h)); r == 0 {
		t.Logf("ImpersonateNamedPipeClient: %v", err)
		return 0, false
	}
	defer windows.RevertToSelf()
	var tok windows.Token
	if err := windows.OpenThreadToken(windows.CurrentThread(), windows.TOKEN_QUERY, true, &tok); err != nil {
		t.Logf("OpenThreadToken: %v", err) // ERROR_CANT_OPEN_ANONYMOUS for an anonymous token
		return 0, false
	}
	defer tok.Close()
	var level uint32
	var n uint32
	if err := windows.GetTokenInformation(tok, windows.TokenImpersonationLevel, (*byte)(unsafe.Pointer(&level)), 4, &n); err != nil {
		t.Fatalf("GetTokenInformation: %v", err)
	}
	return level, true
}

// allOf is a policy of one rule admitting all_of(a, b).
func allOf(t *testing.T, a, b string) *Policy {
	t.Helper()
	p, err := NewPolicy("p", nil, []Rule{{Name: "r", Principals: []Principal{AllOf(mustParsePrincipal(t, a), mustParsePrincipal(t, b))}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
