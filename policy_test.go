package grpcipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/peercred"
	"github.com/grpcipc/grpcipc/internal/testutil"
)

// testCreds makes credentials as the OS would have supplied them: exe ""
// means that it did not tell the executable (else exe must exist: it is
// compared by identity). See [testCredsNoGroups] for unknown groups.
func testCreds(uid, gid int, groups []int, exe string) *Creds {
	c := &Creds{info: peercred.Info{PID: 42, HasPID: true, UID: uid, GID: gid, HasUID: true, Groups: groups, HasGroups: true}}
	if exe != "" {
		if fi, err := os.Stat(exe); err == nil {
			c.info.Exe = peercred.NewExecutable(exe, fi)
		}
	}
	return c
}

// testCredsNoGroups makes credentials whose supplementary groups the OS
// did not tell.
func testCredsNoGroups(uid, gid int) *Creds {
	c := testCreds(uid, gid, nil, "")
	c.info.HasGroups = false
	return c
}

// testExe is an executable file that exists, for exe: principals.
func testExe(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
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
	adm := testExe(t)
	p, err := ParsePolicy([]byte(`{
		"name": "t",
		"deny_rules": [
			{"name": "no-7", "source": {"principals": ["uid:7"]}},
			{"name": "no-admin-for-8", "source": {"principals": ["uid:8"]}, "request": {"paths": ["/admin.Admin/*"]}},
			{"name": "no-admin-for-gid-30", "source": {"principals": ["gid:30"]}, "request": {"paths": ["/admin.Admin/*"]}}
		],
		"allow_rules": [
			{"name": "hello", "request": {"paths": ["/greet.Greeter/SayHello"]}},
			{"name": "admin", "source": {"principals": ["uid:0", "gid:10",
				{"all_of": ["uid:8", "exe:` + strings.ReplaceAll(adm, `\`, `\\`) + `"]}]}, "request": {"paths": ["/admin.Admin/*", "/x.Y/Z"]}},
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
		// Fail closed: a deny rule that needs a field the OS did not tell
		// matches; an allow rule that needs one does not.
		{"unknown caller", nil, "/any.Thing/At", false, "no-7 (the OS did not tell a field this rule needs, so it matches)"},
		{"unknown caller, open method", nil, "/greet.Greeter/SayHello", false, "no-7 (the OS did not tell a field this rule needs, so it matches)"},
		{"unknown groups: per-method deny on a gid matches", testCredsNoGroups(5, 5), "/admin.Admin/Reset", false, "no-admin-for-gid-30 (the OS did not tell a field this rule needs, so it matches)"},
		{"known groups: per-method deny on a gid does not", testCreds(5, 5, []int{1}, ""), "/x.Y/Z", false, ""},
		{"unknown executable: all_of(uid, exe) does not admit", testCreds(8, 8, []int{}, ""), "/x.Y/Z", false, ""},
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
	if ok, _ := p.authorize("/a.B/C", &Creds{info: peercred.Info{SID: "s-1-5-21-1-2-3-1001"}}, self); !ok {
		t.Error("same SID refused")
	}
	if ok, _ := p.authorize("/a.B/C", &Creds{info: peercred.Info{SID: "S-1-5-18"}}, self); ok {
		t.Error("another SID admitted")
	}
	sidRule, _ := ParsePrincipal("sid:S-1-5-32-544")
	c := &Creds{info: peercred.Info{SID: "S-1-5-21-9", GroupSIDs: []string{"S-1-5-32-544"}, HasGroupSIDs: true}}
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
	f.Add([]byte(`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": ["uid:4294967294", "gid:4294967294"]}}]}`))
	f.Add([]byte(`{"n\u0061me": "x", "allow_rules": [{"name": "a", "request": {"paths": ["*"]}}]}`))
	for _, tt := range strictPolicyTests { // each refused; mutations near them are not all
		f.Add([]byte(tt.js))
	}
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

		// Whatever parsed held no null, only documented keys and no key twice.
		if err := checkPolicyKeys(data); err != nil {
			t.Fatalf("ParsePolicy accepted %q: %v", data, err)
		}
		// And it survives being written out and read back.
		again, err := ParsePolicy(policyToJSON(p))
		if err != nil {
			t.Fatalf("ParsePolicy(%q) parsed, but not its rewrite %s: %v", data, policyToJSON(p), err)
		}
		if diff := samePolicy(p, again); diff != "" {
			t.Fatalf("ParsePolicy(%q) rewritten as %s reads back differently: %s", data, policyToJSON(p), diff)
		}
	})
}

// strictPolicyTests are what the strict reading of a policy file refuses
// and encoding/json alone would let through.
var strictPolicyTests = []struct{ js, why string }{
	// null, anywhere
	{`null`, "null is not a policy"},
	{`{"name": null, "allow_rules": [{"name": "a"}]}`, "name: null is not allowed"},
	{`{"name": "x", "deny_rules": null, "allow_rules": [{"name": "a"}]}`, `deny_rules: null is not allowed (leave out "deny_rules" for none)`},
	{`{"name": "x", "allow_rules": null}`, "allow_rules: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a"}, null]}`, "allow_rules[1]: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": null}]}`, "allow_rules[0].name: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": null}]}`, `allow_rules[0].source: null is not allowed (leave out "source" to match every caller)`},
	{`{"name": "x", "deny_rules": [{"name": "d", "source": null}], "allow_rules": [{"name": "a"}]}`, `deny_rules[0].source: null is not allowed`},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": null}}]}`, "allow_rules[0].source.principals: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": ["uid:0", null]}}]}`, "allow_rules[0].source.principals[1]: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"all_of": null}]}}]}`, "allow_rules[0].source.principals[0].all_of: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"all_of": ["uid:0", null]}]}}]}`, "allow_rules[0].source.principals[0].all_of[1]: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"any_of": [{"all_of": [null]}]}]}}]}`, "principals[0].any_of[0].all_of[0]: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a", "request": null}]}`, `allow_rules[0].request: null is not allowed (leave out "request" to match every method)`},
	{`{"name": "x", "allow_rules": [{"name": "a", "request": {"paths": null}}]}`, "allow_rules[0].request.paths: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a", "request": {"paths": ["*", null]}}]}`, "allow_rules[0].request.paths[1]: null is not allowed"},
	{`{"name": "x", "allow_rules": [{"name": "a", "request": {"paths": ["*"], "headers": null}}]}`, "allow_rules[0].request.headers: null is not allowed"},
	// a key twice
	{`{"name": "x", "name": "y", "allow_rules": [{"name": "a"}]}`, "name: duplicate key"},
	{`{"name": "x", "n\u0061me": "y", "allow_rules": [{"name": "a"}]}`, "name: duplicate key"},
	{`{"name": "x", "allow_rules": [{"name": "a"}], "allow_rules": [{"name": "b"}]}`, "allow_rules: duplicate key"},
	{`{"name": "x", "allow_rules": [{"name": "a", "name": "b"}]}`, "allow_rules[0].name: duplicate key"},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": ["*"]}, "source": {"principals": ["uid:0"]}}]}`, "allow_rules[0].source: duplicate key"},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": ["*"], "principals": ["uid:0"]}}]}`, "allow_rules[0].source.principals: duplicate key"},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"all_of": ["*"], "all_of": ["uid:0"]}]}}]}`, "allow_rules[0].source.principals[0].all_of: duplicate key"},
	{`{"name": "x", "allow_rules": [{"name": "a", "request": {"paths": ["*"], "paths": ["/a.B/C"]}}]}`, "allow_rules[0].request.paths: duplicate key"},
	// a key in another case (encoding/json folds case, even ſ to s)
	{`{"Name": "x", "allow_rules": [{"name": "a"}]}`, `unknown field "Name" (keys are case-sensitive: want "name")`},
	{`{"name": "x", "ALLOW_RULES": [{"name": "a"}]}`, `unknown field "ALLOW_RULES" (keys are case-sensitive: want "allow_rules")`},
	{`{"name": "x", "allow_rules": [{"Name": "a"}]}`, `allow_rules[0]: unknown field "Name" (keys are case-sensitive: want "name")`},
	{`{"name": "x", "allow_rules": [{"name": "a", "Source": {"principals": ["*"]}}]}`, `allow_rules[0]: unknown field "Source"`},
	{`{"name": "x", "allow_rules": [{"name": "a", "ſource": {"principals": ["*"]}}]}`, `allow_rules[0]: unknown field "ſource" (keys are case-sensitive: want "source")`},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"Principals": ["*"]}}]}`, `allow_rules[0].source: unknown field "Principals" (keys are case-sensitive: want "principals")`},
	{`{"name": "x", "allow_rules": [{"name": "a", "request": {"PATHS": ["*"]}}]}`, `allow_rules[0].request: unknown field "PATHS"`},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"All_Of": ["*"]}]}}]}`, `unknown operator "All_Of"`},
	// (uid_t)-1 and (gid_t)-1
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": ["uid:4294967295"]}}]}`, `allow_rules[0].source.principals[0]: "uid:4294967295": uid 4294967295 is (uid_t)-1`},
	{`{"name": "x", "allow_rules": [{"name": "a", "source": {"principals": [{"all_of": ["uid:0", "gid:4294967295"]}]}}]}`, `principals[0]: all_of[1]: "gid:4294967295": gid 4294967295 is (gid_t)-1`},
	// something after the policy
	{"{\"name\": \"x\", \"allow_rules\": [{\"name\": \"a\"}]}\n ]", "line 2, column 2: invalid character ']' after the policy"},
	{`{"name": "x", "allow_rules": [{"name": "a"}]}}`, "line 1, column 46: invalid character '}' after the policy"},
}

func TestParsePolicyStrict(t *testing.T) {
	for _, tt := range strictPolicyTests {
		_, err := ParsePolicy([]byte(tt.js))
		if err == nil || !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("ParsePolicy(%s) = %v; want ErrPolicy saying %q", tt.js, err, tt.why)
		}
	}
	// Still read: the lower-case keys however escaped, empty deny_rules,
	// the largest uid and gid that are ids.
	for _, js := range []string{
		`{"n\u0061me": "x", "allow_rules": [{"name": "a"}]}`,
		`{"name": "x", "deny_rules": [], "allow_rules": [{"name": "a", "source": {"principals": ["uid:4294967294", {"any_of": ["gid:4294967294"]}]}}]}`,
	} {
		if _, err := ParsePolicy([]byte(js)); err != nil {
			t.Errorf("ParsePolicy(%s): %v", js, err)
		}
	}
}

func TestParsePrincipalNoID(t *testing.T) {
	for _, s := range []string{"uid:4294967295", "gid:4294967295", "uid:04294967295"} {
		kind := s[:3]
		why := kind + ` 4294967295 is (` + kind + `_t)-1`
		if s == "uid:04294967295" {
			why = `uid 04294967295 is (uid_t)-1`
		}
		_, err := ParsePrincipal(s)
		if err == nil || !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), why) {
			t.Errorf("ParsePrincipal(%q) = %v; want ErrPolicy saying %q", s, err, why)
		}
	}
	for s, want := range map[string]Principal{
		"uid:4294967294": {kind: pUID, id: 4294967294},
		"gid:4294967294": {kind: pGID, id: 4294967294},
	} {
		p, err := ParsePrincipal(s)
		if err != nil || p.kind != want.kind || p.id != want.id {
			t.Errorf("ParsePrincipal(%q) = %+v, %v; want %+v", s, p, err, want)
		}
	}

	dir := testutil.ShortTempDir(t)
	for _, tt := range []struct{ principal, why string }{
		{"uid:4294967295", `allow_rules[0].source.principals[0]: "uid:4294967295": uid 4294967295 is (uid_t)-1`},
		{"gid:4294967295", `allow_rules[0].source.principals[0]: "gid:4294967295": gid 4294967295 is (gid_t)-1`},
		{"uid:4294967294", ""},
		{"gid:4294967294", ""},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tt.principal, ":", "-")+".json")
		js := `{"name": "p", "allow_rules": [{"name": "a", "source": {"principals": ["` + tt.principal + `"]}}]}`
		if err := os.WriteFile(path, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := LoadPolicy(path)
		switch {
		case tt.why == "" && err != nil:
			t.Errorf("LoadPolicy(%s): %v", tt.principal, err)
		case tt.why == "" && p.allow[0].Principals[0].id != 4294967294:
			t.Errorf("LoadPolicy(%s) = %+v", tt.principal, p.allow[0].Principals[0])
		case tt.why != "" && (err == nil || !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.why)):
			t.Errorf("LoadPolicy(%s) = %v; want ErrPolicy naming the file and saying %q", tt.principal, err, tt.why)
		}
	}
}

// checkPolicyKeys is the fuzzer's own check, by other means than
// ParsePolicy's, that a file holds no null, no key but a documented one and
// no key twice in an object.
func checkPolicyKeys(data []byte) error {
	documented := map[string]bool{"name": true, "deny_rules": true, "allow_rules": true, "source": true,
		"principals": true, "all_of": true, "any_of": true, "request": true, "paths": true}
	dec := json.NewDecoder(bytes.NewReader(data))
	var open []map[string]bool // the keys of each object open (nil for an array)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		switch tok {
		case nil:
			return errors.New("a null")
		case json.Delim('{'):
			open = append(open, map[string]bool{})
		case json.Delim('['):
			open = append(open, nil)
		case json.Delim('}'), json.Delim(']'):
			open = open[:len(open)-1]
		}
		// The decoder leaves the colon after a key unread.
		rest := bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")
		if key, ok := tok.(string); ok && len(rest) > 0 && rest[0] == ':' {
			if !documented[key] {
				return fmt.Errorf("key %q", key)
			}
			if keys := open[len(open)-1]; keys[key] {
				return fmt.Errorf("key %q twice", key)
			} else {
				keys[key] = true
			}
		}
	}
}

// policyToJSON writes p in the form ParsePolicy reads.
func policyToJSON(p *Policy) []byte {
	var principal func(pr Principal) any
	principal = func(pr Principal) any {
		if pr.kind != pAllOf && pr.kind != pAnyOf {
			return pr.text
		}
		subs := []any{}
		for _, s := range pr.sub {
			subs = append(subs, principal(s))
		}
		if pr.kind == pAllOf {
			return map[string]any{"all_of": subs}
		}
		return map[string]any{"any_of": subs}
	}
	rules := func(rs []Rule) []any {
		out := []any{}
		for _, r := range rs {
			m := map[string]any{"name": r.Name}
			if len(r.Principals) > 0 {
				var ps []any
				for _, pr := range r.Principals {
					ps = append(ps, principal(pr))
				}
				m["source"] = map[string]any{"principals": ps}
			}
			if len(r.Methods) > 0 {
				m["request"] = map[string]any{"paths": r.Methods}
			}
			out = append(out, m)
		}
		return out
	}
	b, err := json.Marshal(map[string]any{"name": p.name, "deny_rules": rules(p.deny), "allow_rules": rules(p.allow)})
	if err != nil {
		panic(err)
	}
	return b
}

// samePolicy says how two policies differ in what their files said, or "".
func samePolicy(a, b *Policy) string {
	if a.name != b.name {
		return fmt.Sprintf("name %q, then %q", a.name, b.name)
	}
	for i, sets := range [][2][]Rule{{a.deny, b.deny}, {a.allow, b.allow}} {
		field := [...]string{"deny_rules", "allow_rules"}[i]
		if len(sets[0]) != len(sets[1]) {
			return fmt.Sprintf("%s: %d rules, then %d", field, len(sets[0]), len(sets[1]))
		}
		for j := range sets[0] {
			ra, rb := sets[0][j], sets[1][j]
			if ra.Name != rb.Name || fmt.Sprint(ra.Principals) != fmt.Sprint(rb.Principals) || fmt.Sprint(ra.Methods) != fmt.Sprint(rb.Methods) {
				return fmt.Sprintf("%s[%d]: %q %v %q, then %q %v %q", field, j, ra.Name, ra.Principals, ra.Methods, rb.Name, rb.Principals, rb.Methods)
			}
		}
	}
	return ""
}

func TestExeAloneAdmitsNoOne(t *testing.T) {
	exe := "exe:" + abs("/bin/x")
	p := func(s string) Principal { return mustParsePrincipal(t, s) }
	refused := map[string]Principal{
		"exe alone":                    p(exe),
		"any_of(uid, exe)":             AnyOf(p("uid:5"), p(exe)),
		"all_of(*, exe)":               AllOf(p("*"), p(exe)),
		"all_of(exe, any_of)":          AllOf(p(exe), AnyOf(p("uid:5"), p("*"))),
		"any_of(all_of(uid,exe), exe)": AnyOf(AllOf(p("uid:5"), p(exe)), p(exe)),
	}
	for name, pr := range refused {
		_, err := NewPolicy("p", nil, []Rule{{Name: "r", Principals: []Principal{pr}}})
		if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "admits any user who can run the file") {
			t.Errorf("%s in an allow rule: %v; want an error saying it admits any user", name, err)
		}
	}
	allowed := map[string]Principal{
		"all_of(uid, exe)":              AllOf(p("uid:5"), p(exe)),
		"all_of(same-user, exe)":        AllOf(p("same-user"), p(exe)),
		"all_of(any_of(uid, gid), exe)": AllOf(AnyOf(p("uid:5"), p("gid:7")), p(exe)),
		"all_of(root, exe)":             AllOf(p("root"), p(exe)),
	}
	for name, pr := range allowed {
		if _, err := NewPolicy("p", nil, []Rule{{Name: "r", Principals: []Principal{pr}}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A deny rule may not name an executable: a copy of the file dodges it.
	for name, pr := range map[string]Principal{"exe": p(exe), "all_of(uid, exe)": AllOf(p("uid:5"), p(exe))} {
		_, err := NewPolicy("p", []Rule{{Name: "d", Principals: []Principal{pr}}}, []Rule{{Name: "a"}})
		if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "dodged by running a copy") {
			t.Errorf("%s in a deny rule: %v; want an error saying a copy dodges it", name, err)
		}
	}
	if _, err := AllowPolicy(p(exe)); err == nil {
		t.Error("AllowPolicy(exe:...) accepted")
	}
}

func mustParsePrincipal(t *testing.T, s string) Principal {
	t.Helper()
	p, err := ParsePrincipal(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The ready principals are what ParsePrincipal makes of their names, and
// a policy built from them in Go needs no error check of a constant.
func TestReadyPrincipals(t *testing.T) {
	for name, p := range map[string]Principal{"same-user": SameUser(), "root": Root(), "*": Anyone()} {
		want, err := ParsePrincipal(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("%s: %+v, ParsePrincipal gives %+v", name, p, want)
		}
	}
	p, err := NewPolicy("ready", nil, []Rule{{Name: "self", Principals: []Principal{SameUser(), Root()}}})
	if err != nil {
		t.Fatal(err)
	}
	self := identity{uid: 1000, hasUID: true}
	for _, c := range []struct {
		creds *Creds
		ok    bool
	}{{testCreds(1000, 1000, nil, ""), true}, {testCreds(0, 0, nil, ""), true}, {testCreds(5, 5, nil, ""), false}} {
		if ok, rule := p.authorize("/a.B/C", c.creds, self); ok != c.ok {
			t.Errorf("%s: admitted %v (rule %q), want %v", c.creds, ok, rule, c.ok)
		}
	}
}

// A Principal made in Go that names no one by mistake is refused where it
// is used, not silently admitted (UID(-1) would still open the socket).
func TestPrincipalsThatNameNoOne(t *testing.T) {
	for _, p := range []Principal{{}, UID(-1), UID(noID), GID(-5), GID(1 << 40), AllOf(SameUser(), UID(-1))} {
		if _, err := AllowPolicy(p); !errors.Is(err, ErrPolicy) {
			t.Errorf("AllowPolicy(%q) = %v; want ErrPolicy", p.String(), err)
		}
		if _, err := NewPolicy("p", nil, []Rule{{Name: "a", Principals: []Principal{p}}}); !errors.Is(err, ErrPolicy) {
			t.Errorf("NewPolicy with %q = %v; want ErrPolicy", p.String(), err)
		}
		if _, err := NewClient("unix:x.sock", WithExpectedServer(p)); err == nil || !strings.Contains(err.Error(), "expected server") {
			t.Errorf("WithExpectedServer(%q) = %v; want an error", p.String(), err)
		}
	}
	for _, p := range []Principal{UID(0), UID(noID - 1), GID(100)} {
		if _, err := AllowPolicy(p); err != nil {
			t.Errorf("AllowPolicy(%q) = %v", p.String(), err)
		}
	}
}
