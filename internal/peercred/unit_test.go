package peercred

import "testing"

func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		path, system, user string
		uid                int
		hasUser            bool
	}{
		{"/system.slice/backup.service", "backup.service", "", 0, false},
		{"/system.slice/backup.service/worker", "backup.service", "", 0, false},
		{"/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service", "", 0, false},
		{"/init.scope", "init.scope", "", 0, false},
		{"/user.slice/user-1000.slice/session-2.scope", "session-2.scope", "", 0, false},
		{"/user.slice/user-2002.slice/user@2002.service/app.slice/demo.service", "user@2002.service", "demo.service", 2002, true},
		{"/user.slice/user-2002.slice/user@2002.service/init.scope", "user@2002.service", "init.scope", 2002, true},
		{"/user.slice/user-2002.slice/user@2002.service/app.slice", "user@2002.service", "", 0, false},
		{"/user.slice/user-2002.slice/user@2002.service", "user@2002.service", "", 0, false},
		// A user's own cgroup named like a system unit is still inside its manager.
		{"/user.slice/user-2002.slice/user@2002.service/system.slice/backup.service", "user@2002.service", "backup.service", 2002, true},
		{"/system.slice/_cpu.service", "cpu.service", "", 0, false},
		{"/", "", "", 0, false},
		{"/system.slice", "", "", 0, false},
		{"/system.slice/not-a-unit", "", "", 0, false},
		{"/grpcipc-test-1/system.slice/demo.service", "", "", 0, false},
		{"/system.slice/.service", "", "", 0, false},
		{"/system.slice/bad name.service", "", "", 0, false},
		{"/user.slice/user-x.slice/user@x.service/a.service", "user@x.service", "", 0, false},
		{"/user.slice/user@01.service/a.service", "user@01.service", "", 0, false},
	} {
		system, user, uid, hasUser := Units(tc.path)
		if system != tc.system || user != tc.user || uid != tc.uid || hasUser != tc.hasUser {
			t.Errorf("Units(%q) = %q, %q, %d, %v; want %q, %q, %d, %v", tc.path, system, user, uid, hasUser, tc.system, tc.user, tc.uid, tc.hasUser)
		}
	}
}

func TestIsUnitName(t *testing.T) {
	for s, want := range map[string]bool{
		"backup.service": true, "getty@tty1.service": true, "session-2.scope": true, "dbus.socket": true,
		"getty@.service": false, ".service": false, "backup": false, "a b.service": false, "x.slice": false,
		"x.timer": false, "": false,
	} {
		if got := isUnitName(s); got != want {
			t.Errorf("isUnitName(%q) = %v, want %v", s, got, want)
		}
	}
}
