package grpcipc

import "testing"

// BenchmarkAuthorize is the per-call work of a policy: matching the
// connection's already-read identity against the rules.
func BenchmarkAuthorize(b *testing.B) {
	self := identity{uid: 1000, hasUID: true}
	perMethod, err := ParsePolicy([]byte(`{"name": "b",
		"deny_rules": [{"name": "d", "source": {"principals": ["uid:7"]}}],
		"allow_rules": [
		{"name": "hello", "source": {"principals": ["*"]}, "request": {"paths": ["/greet.Greeter/SayHello"]}},
		{"name": "admin", "source": {"principals": ["uid:0", "gid:10"]}, "request": {"paths": ["/admin.Admin/*"]}},
		{"name": "self", "source": {"principals": ["same-user"]}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	c := testCreds(1000, 1000, []int{10, 20}, abs("/usr/bin/x"))
	for _, tc := range []struct {
		name   string
		p      *Policy
		method string
	}{
		{"same-user", SameUserPolicy(), "/greet.Greeter/SayHello"},
		{"per-method-first-rule", perMethod, "/greet.Greeter/SayHello"},
		{"per-method-last-rule", perMethod, "/other.Service/Method"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ok, _ := tc.p.authorize(tc.method, c, self); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}
