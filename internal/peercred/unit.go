package peercred

import (
	"strconv"
	"strings"
)

// Units returns the systemd units a cgroup v2 path places a process in,
// by systemd's layout of the hierarchy (systemd.special(7), "Slices"):
// past the slices from the root (components ending in ".slice"), the
// first component is the system unit the process runs in; inside a user
// manager's unit (user@UID.service), past the slices of that manager, the
// first component is the user unit. A path with no unit past its slices
// ("/", "/system.slice") has none; a process of a user manager's unit
// has that manager as its system unit, never a unit it made itself, since
// a user can make cgroups only inside the subtree delegated to its
// manager. systemd escapes a cgroup name that could be mistaken for a
// kernel file with a leading "_": it is removed.
func Units(path string) (system, user string, uid int, hasUser bool) {
	comps := strings.Split(strings.Trim(path, "/"), "/")
	i := skipSlices(comps, 0)
	if i == len(comps) {
		return "", "", 0, false
	}
	system = unescapeCgroup(comps[i])
	if !isUnitName(system) {
		return "", "", 0, false
	}
	id, ok := userManager(system)
	if !ok {
		return system, "", 0, false
	}
	j := skipSlices(comps, i+1)
	if j == len(comps) {
		return system, "", 0, false
	}
	user = unescapeCgroup(comps[j])
	if !isUnitName(user) {
		return system, "", 0, false
	}
	return system, user, id, true
}

// skipSlices returns the index of the first component from i on that is
// not a slice.
func skipSlices(comps []string, i int) int {
	for i < len(comps) && comps[i] != "" && strings.HasSuffix(unescapeCgroup(comps[i]), ".slice") {
		i++
	}
	return i
}

// userManager says whether unit is a user manager's, user@UID.service,
// and for which uid.
func userManager(unit string) (int, bool) {
	s, ok := strings.CutPrefix(unit, "user@")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".service")
	if !ok || s == "" {
		return 0, false
	}
	uid, err := strconv.ParseUint(s, 10, 32)
	if err != nil || strconv.FormatUint(uid, 10) != s {
		return 0, false
	}
	return int(uid), true
}

// unescapeCgroup undoes systemd's escape of a cgroup name (cg_escape): a
// leading "_" added to names that could be taken for a kernel file.
func unescapeCgroup(s string) string { return strings.TrimPrefix(s, "_") }

// unitSuffixes are the unit types whose processes have cgroups of their
// own.
var unitSuffixes = []string{".service", ".scope", ".socket", ".mount", ".swap"}

// IsUnitName says whether s is a name systemd could give a unit that runs
// processes (see isUnitName).
func IsUnitName(s string) bool { return isUnitName(s) }

// isUnitName says whether s is a name systemd could give a unit that runs
// processes: its characters (systemd's unit_name_is_valid: letters,
// digits and ":-_.\@"), at most 255 bytes, a prefix, and a type.
func isUnitName(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(`:-_.\@`, c) >= 0) {
			return false
		}
	}
	for _, suf := range unitSuffixes {
		if name, ok := strings.CutSuffix(s, suf); ok {
			// "getty@.service" is a template, which runs nothing itself.
			return name != "" && !strings.HasSuffix(name, "@")
		}
	}
	return false
}
