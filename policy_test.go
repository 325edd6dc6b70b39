package grpcipc

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

// testCreds makes credentials as the OS would have supplied them.
func testCreds(uid, gid int, groups []int, exe string) *Creds {
	c := &Creds{pid: 42, hasPID: true, uid: uid, gid: gid, hasUID: true, groups: groups, hasGroups: groups != nil}
	c.exeOnce.Do(func() { c.exe = exe })
	return c
}

// lookupGroupWorks: Wine names groups that it cannot then look up.
func lookupGroupWorks(name string) bool {
	_, err := user.LookupGroup(name)
	return err == nil
}

// abs makes a slash path absolute on this OS (a drive on Windows), in the
// form a policy file may write it.
func abs(p string) string {
	if filepath.Separator == '\\' {
		return "C:" + p
	}
	return p
}

func TestParsePrincipal(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	uid, uidSID := splitID(me.Uid)
	gid, gidSID := splitID(me.Gid)
	good := map[string]Principal{
		"*":                                {kind: pAny},
		"same-user":                        {kind: pSameUser},
		"uid:0":                            {kind: pUID, id: 0},
		"gid:100":                          {kind: pGID, id: 100},
		"sid:s-1-5-18":                     {kind: pSID, sid: "S-1-5-18"},
		"exe:" + abs("/usr/bin/../bin/ls"): {kind: pExe, exe: filepath.Clean(abs("/usr/bin/ls"))},
		"user:" + me.Username:              {kind: pUser, id: uid, sid: uidSID},
		"root":                             {kind: pSystem},
		"system":                           {kind: pSystem},
	}
	if g, err := user.LookupGroupId(me.Gid); err == nil && lookupGroupWorks(g.Name) {
		good["group:"+g.Name] = Principal{kind: pGroup, id: gid, sid: gidSID}
	} else {
		t.Logf("no name for this user's group %s, so group:NAME is not tried: %v", me.Gid, err)
	}
	for s, want := range good {
		p, err := ParsePrincipal(s)
		if err != nil {
			t.Errorf("ParsePrincipal(%q): %v", s, err)
			continue
		}
		if p.kind != want.kind || p.id != want.id || p.sid != want.sid || p.exe != want.exe || p.String() != s {
			t.Errorf("ParsePrincipal(%q) = %+v, want %+v", s, p, want)
		}
	}
	bad := map[string]string{
		"":                          "want KIND:VALUE",
		"alice":                     "want KIND:VALUE",
		"uid:":                      "empty uid",
		"uid:-1":                    `uid "-1" is not a number`,
		"uid:+1":                    `uid "+1" is not a number`,
		"gid:x":                     `gid "x" is not a number`,
		"uid:99999999999":           "not a number",
		"usr:alice":                 `unknown kind "usr"`,
		"user:no-such-user-grpcipc": `unknown user "no-such-user-grpcipc"`,
		"group:no-such-group-gi":    `unknown group "no-such-group-gi"`,
		"sid:1-5-18":                "is not a SID",
		"exe:bin/ls":                "not an absolute path",
	}
	for s, why := range bad {
		_, err := ParsePrincipal(s)
		if err == nil || !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), why) {
			t.Errorf("ParsePrincipal(%q) = %v; want ErrPolicy saying %q", s, err, why)
		}
	}
}

func TestPolicyDecisions(t *testing.T) {
	self := identity{uid: 1000, hasUID: true}
	adm := filepath.Clean(abs("/usr/bin/adm"))
	p, err := ParsePolicy([]byte(`{
		"name": "t",
		"deny_rules": [
			{"name": "no-7", "source": {"principals": ["uid:7"]}},
			{"name": "no-admin-for-8", "source": {"principals": ["uid:8"]}, "request": {"paths": ["/admin.Admin/*"]}}
		],
		"allow_rules": [
			{"name": "hello", "request": {"paths": ["/greet.Greeter/SayHello"]}},
			{"name": "admin", "source": {"principals": ["uid:0", "gid:10",
				{"all_of": ["uid:8", "exe:` + abs("/usr/bin/adm") + `"]}]}, "request": {"paths": ["/admin.Admin/*", "/x.Y/Z"]}},
			{"name": "self", "source": {"principals": ["same-user"]}}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		c      *Creds
		method string
		ok     bool
		rule   string
	}{
		{"anyone says hello", testCreds(5, 5, nil, ""), "/greet.Greeter/SayHello", true, "hello"},
		{"deny beats allow", testCreds(7, 7, nil, ""), "/greet.Greeter/SayHello", false, "no-7"},
		{"no rule for the method", testCreds(5, 5, nil, ""), "/admin.Admin/Reset", false, ""},
		{"uid admits", testCreds(0, 0, nil, ""), "/admin.Admin/Reset", true, "admin"},
		{"service pattern is a prefix of methods only", testCreds(0, 0, nil, ""), "/admin.AdminX/Reset", false, ""},
		{"exact method", testCreds(0, 0, nil, ""), "/x.Y/Z", true, "admin"},
		{"exact method only", testCreds(0, 0, nil, ""), "/x.Y/Z2", false, ""},
		{"primary gid", testCreds(5, 10, nil, ""), "/admin.Admin/Reset", true, "admin"},
		{"supplementary gid", testCreds(5, 5, []int{3, 10}, ""), "/admin.Admin/Reset", true, "admin"},
		{"all_of needs all", testCreds(9, 9, nil, adm), "/admin.Admin/Reset", false, ""},
		{"per-method deny", testCreds(8, 8, nil, adm), "/admin.Admin/Reset", false, "no-admin-for-8"},
		{"per-method deny leaves other methods", testCreds(8, 8, nil, adm), "/x.Y/Z", true, "admin"},
		{"same user", testCreds(1000, 1000, nil, ""), "/any.Thing/At", true, "self"},
		{"unknown caller", nil, "/any.Thing/At", false, ""},
		{"unknown caller, open method", nil, "/greet.Greeter/SayHello", true, "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rule := p.authorize(tt.method, tt.c, self)
			if ok != tt.ok || rule != tt.rule {
				t.Errorf("authorize(%s, %v) = %v %q, want %v %q", tt.method, tt.c, ok, rule, tt.ok, tt.rule)
			}
		})
	}
	// Connection-level: refused only when no method could be allowed.
	for _, tc := range []struct {
		c  *Creds
		ok bool
	}{{testCreds(7, 7, nil, ""), false}, {testCreds(5, 5, nil, ""), true}, {testCreds(8, 8, nil, ""), true}} {
		if ok, _ := p.admitsConn(tc.c, self); ok != tc.ok {
			t.Errorf("admitsConn(%v) = %v, want %v", tc.c, ok, tc.ok)
		}
	}
	if !p.hasMethodRules() || SameUserPolicy().hasMethodRules() {
		t.Error("hasMethodRules is wrong")
	}
}

func TestSameUserPolicyWindows(t *testing.T) {
	self := identity{sid: "S-1-5-21-1-2-3-1001"}
	p := SameUserPolicy()
	if ok, _ := p.authorize("/a.B/C", &Creds{sid: "s-1-5-21-1-2-3-1001"}, self); !ok {
		t.Error("same SID refused")
	}
	if ok, _ := p.authorize("/a.B/C", &Creds{sid: "S-1-5-18"}, self); ok {
		t.Error("another SID admitted")
	}
	sidRule, _ := ParsePrincipal("sid:S-1-5-32-544")
	c := &Creds{sid: "S-1-5-21-9", groupSIDs: []string{"S-1-5-32-544"}, hasGroups: true}
	if !sidRule.matches(c, self) {
		t.Error("group SID not matched")
	}
	if sidRule.matches(testCreds(0, 0, nil, ""), identity{uid: 0, hasUID: true}) {
		t.Error("a SID matched a Unix peer")
	}
}

func TestSocketAccess(t *testing.T) {
	self := identity{uid: 1000, hasUID: true}
	mk := func(principals ...string) *Policy {
		var ps []Principal
		for _, s := range principals {
			p, err := ParsePrincipal(s)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		p, err := NewPolicy("p", nil, []Rule{{Name: "r", Principals: ps}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	allOf := func(a, b string) *Policy {
		pa, _ := ParsePrincipal(a)
		pb, _ := ParsePrincipal(b)
		p, _ := NewPolicy("p", nil, []Rule{{Name: "r", Principals: []Principal{AllOf(pa, pb)}}})
		return p
	}
	noSource, _ := NewPolicy("p", nil, []Rule{{Name: "r"}})
	tests := []struct {
		name string
		p    *Policy
		mode fs.FileMode
		gid  int
	}{
		{"same-user", SameUserPolicy(), 0o600, -1},
		{"own uid", mk("uid:1000"), 0o600, -1},
		{"sid", mk("sid:S-1-5-18"), 0o600, -1},
		{"one gid", mk("same-user", "gid:100"), 0o660, 100},
		{"two gids", mk("gid:100", "gid:101"), 0o666, -1},
		{"other uid", mk("uid:0"), 0o666, -1},
		{"exe", mk("exe:" + abs("/bin/x")), 0o666, -1},
		{"anyone", mk("*"), 0o666, -1},
		{"no source", noSource, 0o666, -1},
		{"all_of with self", allOf("same-user", "exe:"+abs("/bin/x")), 0o600, -1},
		{"all_of with group", allOf("gid:100", "exe:"+abs("/bin/x")), 0o660, 100},
		{"all_of of others", allOf("uid:5", "exe:"+abs("/bin/x")), 0o666, -1},
	}
	for _, tt := range tests {
		mode, gid := tt.p.socketAccess(self)
		if mode != tt.mode || gid != tt.gid {
			t.Errorf("%s: socketAccess = %v, %d; want %v, %d", tt.name, mode, gid, tt.mode, tt.gid)
		}
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := []struct{ js, why string }{
		{``, "EOF"},
		{`{"name": "x",`, "unexpected EOF"},
		{"{\n \"name\": \"x\",\n \"allow_rules\": [}\n", "line 3, column 18"},
		{`{"allow_rules": [{"name": "a"}]}`, "name: missing or empty"},
		{`{"name": "x"}`, "allow_rules: missing or empty"},
		{`{"name": "x", "allow_rules": [{"name": "a"}], "extra": 1}`, `unknown field "extra"`},
		{`{"name": "x", "allow_rules": [{}]}`, "allow_rules[0]: the rule has no name"},
		{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": []}}]}`, "allow_rules[0].source.principals: empty"},
		{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": ["uid:0", "usr:x"]}}]}`, `allow_rules[0].source.principals[1]: "usr:x": unknown kind "usr"`},
		{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"all_of": ["uid:0", "uid:x"]}]}}]}`, `principals[0]: all_of[1]: "uid:x": uid "x" is not a number`},
		{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"one_of": ["uid:0"]}]}}]}`, `unknown operator "one_of"`},
		{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"all_of": []}]}}]}`, `all_of: empty`},
		{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [7]}}]}`, `want a string or one of`},
		{`{"name": "x", "allow_rules": [{"name": "a", "request": {"paths": ["greet.Greeter/SayHello"]}}]}`, `allow_rules[0].request.paths[0]: "greet.Greeter/SayHello" is not a method pattern`},
		{`{"name": "x", "allow_rules": [{"name": "a", "request": {"paths": ["/greet.*/SayHello"]}}]}`, `is not a method pattern`},
		{`{"name": "x", "allow_rules": [{"name": "a", "request": {"paths": []}}]}`, `allow_rules[0].request.paths: empty`},
		{`{"name": "x", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "k", "values": ["v"]}]}}]}`, `request.headers: header matching is not supported`},
		{`{"name": "x", "deny_rules": [{"name": "d", "source": {"principals": ["exe:rel"]}}], "allow_rules": [{"name": "a"}]}`, `deny_rules[0].source.principals[0]`},
		{`{"name": "x", "allow_rules": [{"name": "a"}]} {}`, "more than one JSON value"},
	}
	for _, tt := range tests {
		_, err := ParsePolicy([]byte(tt.js))
		if err == nil || !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("ParsePolicy(%s) = %v; want ErrPolicy saying %q", tt.js, err, tt.why)
		}
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"name": "g", "allow_rules": [{"name": "a", "source": {"principals": ["same-user"]}}]}`), 0o600)
	if p, err := LoadPolicy(good); err != nil || p.Name() != "g" {
		t.Errorf("LoadPolicy(good) = %v, %v", p, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"name": "b", "allow_rules": [{"name": "a", "source": {"principals": ["uid:x"]}}]}`), 0o600)
	_, err := LoadPolicy(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "allow_rules[0].source.principals[0]") {
		t.Errorf("LoadPolicy(bad) = %v; want the file and the field named", err)
	}
	if _, err := LoadPolicy(filepath.Join(dir, "missing.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPolicy(missing) = %v, want ErrNotExist", err)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": ["uid:0", {"all_of": ["gid:1", "exe:/x"]}]}, "request": {"paths": ["/a.B/*"]}}]}`))
	f.Add([]byte(`{"name": "x", "deny_rules": [{"name": "d"}], "allow_rules": [{"name": "a"}]}`))
	f.Add([]byte(`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"any_of": [{"all_of": ["*"]}]}]}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("error %v does not wrap ErrPolicy", err)
			}
			return
		}
		// Whatever parsed can be evaluated without trouble.
		self := identity{uid: 1, hasUID: true}
		p.authorize("/a.B/C", testCreds(1, 1, []int{2}, abs("/x")), self)
		p.admitsConn(nil, self)
		p.socketAccess(self)
	})
}
