package grpcipc

import (
	"errors"
	"strings"
	"testing"

	"github.com/grpcipc/grpcipc/internal/peercred"
)

// TestCgroupPrincipals: cgroup:, unit: and user-unit: against callers'
// cgroups, by path components and by systemd's layout; a caller whose
// cgroup was not read is unknown (no allow, a deny).
func TestCgroupPrincipals(t *testing.T) {
	creds := func(uid int, cg string) *Creds {
		return &Creds{info: peercred.Info{HasUID: true, UID: uid, GID: uid, Cgroup: cg}}
	}
	system := creds(0, "/system.slice/backup.service")
	worker := creds(0, "/system.slice/backup.service/worker")
	lookalike := creds(0, "/system.slice/backup.service-evil")
	userUnit := creds(2002, "/user.slice/user-2002.slice/user@2002.service/app.slice/backup.service")
	otherUsers := creds(3003, "/user.slice/user-2002.slice/user@2002.service/app.slice/backup.service")
	unread := creds(0, "")
	for _, tc := range []struct {
		principal string
		c         *Creds
		want      match
	}{
		{"unit:backup.service", system, matchYes},
		{"unit:backup.service", worker, matchYes},
		{"unit:backup.service", lookalike, matchNo},
		{"unit:backup.service", userUnit, matchNo}, // the user's own, never the system's
		{"unit:user@2002.service", userUnit, matchYes},
		{"unit:backup.service", unread, matchUnknown},
		{"user-unit:backup.service", userUnit, matchYes},
		{"user-unit:backup.service", otherUsers, matchNo}, // not its own user's manager
		{"user-unit:backup.service", system, matchNo},
		{"cgroup:/system.slice/backup.service", worker, matchYes},
		{"cgroup:/system.slice/backup.service", system, matchYes},
		{"cgroup:/system.slice/backup.service", lookalike, matchNo},
		{"cgroup:/system.slice", worker, matchYes},
		{"cgroup:/", userUnit, matchYes},
		{"cgroup:/user.slice", system, matchNo},
		{"cgroup:/system.slice", unread, matchUnknown},
	} {
		p, err := ParsePrincipal(tc.principal)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.eval(tc.c, identity{}); got != tc.want {
			t.Errorf("%s for cgroup %q (uid %d): %v, want %v", tc.principal, tc.c.info.Cgroup, tc.c.info.UID, got, tc.want)
		}
	}
	for _, bad := range []string{"unit:backup", "unit:getty@.service", "unit:a b.service", "user-unit:x.slice", "cgroup:system.slice", "cgroup:/a/../b", "cgroup:/a/", "unit:"} {
		if _, err := ParsePrincipal(bad); err == nil || !strings.Contains(err.Error(), "invalid policy") {
			t.Errorf("ParsePrincipal(%q): %v, want an error", bad, err)
		}
	}
	pol, err := NewPolicy("p", nil, []Rule{{Name: "backup", Principals: []Principal{mustPrincipal(t, "unit:backup.service")}}})
	if err != nil {
		t.Fatal(err)
	}
	if !pol.namesCgroup() || defaultPolicyNamesCgroup() {
		t.Error("namesCgroup: a policy with unit: must read cgroups, the default must not")
	}
}

func mustPrincipal(t *testing.T, s string) Principal {
	t.Helper()
	p, err := ParsePrincipal(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// defaultPolicyNamesCgroup says whether the default policy reads cgroups.
func defaultPolicyNamesCgroup() bool { return SameUserPolicy().namesCgroup() }

func TestCredsUnits(t *testing.T) {
	c := &Creds{info: peercred.Info{HasUID: true, UID: 2002, PID: 7, HasPID: true, Cgroup: "/user.slice/user-2002.slice/user@2002.service/app.slice/demo.service"}}
	if u, ok := c.Unit(); !ok || u != "user@2002.service" {
		t.Errorf("Unit = %q, %v", u, ok)
	}
	if u, ok := c.UserUnit(); !ok || u != "demo.service" {
		t.Errorf("UserUnit = %q, %v", u, ok)
	}
	if cg, ok := c.Cgroup(); !ok || !strings.HasSuffix(cg, "/demo.service") {
		t.Errorf("Cgroup = %q, %v", cg, ok)
	}
	if s := c.String(); !strings.Contains(s, "cgroup /user.slice/") {
		t.Errorf("String %q does not say where it ran", s)
	}
	none := &Creds{info: peercred.Info{HasUID: true}}
	if _, ok := none.Unit(); ok {
		t.Error("a unit without a cgroup")
	}
	if _, ok := none.Cgroup(); ok {
		t.Error("a cgroup not read")
	}
}

func TestLabelPrincipal(t *testing.T) {
	selinux := &Creds{info: peercred.Info{HasUID: true, Label: "system_u:system_r:backup_t:s0"}}
	apparmor := &Creds{info: peercred.Info{HasUID: true, Label: "/usr/bin/backupd (enforce)"}}
	none := &Creds{info: peercred.Info{HasUID: true}}
	for _, tc := range []struct {
		principal string
		c         *Creds
		want      match
	}{
		{"label:system_u:system_r:backup_t:s0", selinux, matchYes},
		{"label:system_u:system_r:other_t:s0", selinux, matchNo},
		{"label:/usr/bin/backupd", apparmor, matchYes},
		{"label:/usr/bin/backupd (enforce)", apparmor, matchYes},
		{"label:/usr/bin/backupd (complain)", apparmor, matchNo},
		{"label:/usr/bin/other", apparmor, matchNo},
		{"label:unconfined", none, matchUnknown},
	} {
		p := mustPrincipal(t, tc.principal)
		if got := p.eval(tc.c, identity{}); got != tc.want {
			t.Errorf("%s for label %q: %v, want %v", tc.principal, tc.c.info.Label, got, tc.want)
		}
	}
	if !namesCgroup(mustPrincipal(t, "label:x")) {
		t.Error("a label: principal does not make the server read the label")
	}
	if _, err := ParsePrincipal("label:a\nb"); err == nil {
		t.Error("a label with a newline: no error")
	}
}

// TestDenyUnitFailsClosed: a deny rule naming a unit refuses a caller
// whose cgroup could not be read (it exited before the read, no pidfd),
// even one the allow rules admit (same-user), and only such a caller or
// one in the unit; the same for a deny rule inside an any_of.
func TestDenyUnitFailsClosed(t *testing.T) {
	self := identity{uid: 1000, hasUID: true}
	unread := &Creds{info: peercred.Info{HasUID: true, UID: 1000, GID: 1000, HasPID: true, PID: 9, CgroupErr: errors.New("the peer exited before its identity could be read")}}
	bad := &Creds{info: peercred.Info{HasUID: true, UID: 1000, GID: 1000, Cgroup: "/system.slice/bad.service"}}
	good := &Creds{info: peercred.Info{HasUID: true, UID: 1000, GID: 1000, Cgroup: "/system.slice/good.service"}}
	for _, deny := range []Principal{mustPrincipal(t, "unit:bad.service"), AnyOf(mustPrincipal(t, "uid:4242"), mustPrincipal(t, "unit:bad.service"))} {
		pol, err := NewPolicy("p", []Rule{{Name: "no-bad", Principals: []Principal{deny}}}, []Rule{{Name: "me", Principals: []Principal{mustPrincipal(t, "same-user")}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			c    *Creds
			want bool
		}{{"unread", unread, false}, {"in bad.service", bad, false}, {"in good.service", good, true}} {
			if ok, rule := pol.admitsConn(tc.c, self); ok != tc.want {
				t.Errorf("deny %s, caller %s: admitted %v (rule %q), want %v", deny.String(), tc.name, ok, rule, tc.want)
			}
		}
	}
}
