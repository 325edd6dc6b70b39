package peercred

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// readCgroup reads the cgroup v2 path of the process whose /proc
// directory is dir: the "0::" line of its cgroup file, as this process's
// cgroup namespace names it. Where the kernel tells pidfd's cgroup id
// (PIDFD_GET_INFO), the path must be that cgroup's: a process that moved
// while it was read gets neither.
func readCgroup(dir, pidfd int) (string, error) {
	p, err := readCgroupFile(dir)
	if err != nil {
		return "", err
	}
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_CGROUPID}
	switch err := unix.IoctlPidfdInfo(pidfd, &info); {
	case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL):
		return p, nil // before Linux 6.13: the path alone, checked by the pidfd afterwards
	case err != nil:
		return "", fmt.Errorf("reading the cgroup id: %w", os.NewSyscallError("ioctl PIDFD_GET_INFO", err))
	case info.Mask&unix.PIDFD_INFO_CGROUPID == 0:
		return p, nil
	}
	id, err := cgroupID(p)
	if err != nil {
		return "", err
	}
	if id != info.Cgroupid {
		return "", fmt.Errorf("the peer moved to another cgroup while %s was read", p)
	}
	return p, nil
}

// maxCgroupFile bounds /proc/PID/cgroup: a line per hierarchy (at most
// 16), each path at most PATH_MAX.
const maxCgroupFile = 17 * (unix.PathMax + 64)

// readCgroupFile reads the "0::" path of the cgroup file of the /proc
// directory dir, whole: on a hybrid machine the v1 lines come first, and
// they can be long (a user's delegated name=systemd subtree), so a first
// page only could hold a cut path, or none.
func readCgroupFile(dir int) (string, error) {
	fd, err := unix.Openat(dir, "cgroup", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("reading the cgroup: %w", os.NewSyscallError("open /proc/PID/cgroup", err))
	}
	f := os.NewFile(uintptr(fd), "cgroup")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCgroupFile+1))
	if err != nil {
		return "", fmt.Errorf("reading the cgroup: %w", err)
	}
	if len(b) > maxCgroupFile {
		return "", fmt.Errorf("reading the cgroup: a cgroup file longer than %d bytes", maxCgroupFile)
	}
	return parseCgroupV2(b)
}

// parseCgroupV2 returns the path of the "0::" line of a /proc/PID/cgroup
// file: the process's cgroup in the v2 hierarchy. A path outside this
// process's cgroup namespace (it starts with "/..") is not one this
// process can name.
func parseCgroupV2(b []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		p, ok := strings.CutPrefix(sc.Text(), "0::")
		if !ok {
			continue
		}
		switch {
		case !strings.HasPrefix(p, "/"):
			return "", fmt.Errorf("a cgroup v2 path %q that is not absolute", p)
		case p == "/.." || strings.HasPrefix(p, "/../"):
			return "", errors.New("the peer's cgroup is outside this process's cgroup namespace")
		case path.Clean(p) != p:
			return "", fmt.Errorf("a cgroup v2 path %q that is not clean", p)
		case strings.HasSuffix(p, " (deleted)"):
			// A zombie's cgroup, removed since: no path names it.
			return "", errors.New("the peer's cgroup has been removed")
		}
		return p, nil
	}
	return "", errors.New("the peer is in no cgroup v2 hierarchy (a cgroup v1 machine)")
}

// cgroupID returns the id of the cgroup at path p of the v2 hierarchy:
// its directory's inode number where the hierarchy is mounted.
func cgroupID(p string) (uint64, error) {
	root, err := cgroup2Mount()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Stat(root+p, &st); err != nil {
		// Gone since it was read: the process moved, or the cgroup was
		// removed with it.
		return 0, fmt.Errorf("the peer's cgroup %s: %w", p, os.NewSyscallError("stat", err))
	}
	return st.Ino, nil
}

// CgroupRoot returns where the cgroup v2 hierarchy is mounted, the
// directory of its root cgroup.
func CgroupRoot() (string, error) { return cgroup2Mount() }

// cgroup2Mount is where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// (unified) or /sys/fs/cgroup/unified (hybrid), as /proc/self/mountinfo
// says.
var cgroup2Mount = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	return cgroup2MountIn(b)
})

// cgroup2MountIn finds the cgroup v2 mount in mountinfo b. Its root must
// be this process's cgroup namespace's ("/"): one mounted from elsewhere
// (a host's mount seen from inside a cgroup namespace: "/..") has
// directories that the paths in /proc/PID/cgroup, which are relative to
// the namespace, do not name.
func cgroup2MountIn(b []byte) (string, error) {
	m, root := mountAndRoot(b, "cgroup2")
	switch {
	case m == "":
		return "", errors.New("no cgroup v2 hierarchy is mounted")
	case root != "/":
		return "", fmt.Errorf("the cgroup v2 hierarchy at %s is mounted from %q, not from this cgroup namespace's root: its directories are not the ones /proc/PID/cgroup names", m, root)
	}
	return m, nil
}

// mountOf returns the mount point of the first file system of type fstype
// in mountinfo b ("" if none).
func mountOf(b []byte, fstype string) string {
	m, _ := mountAndRoot(b, fstype)
	return m
}

// mountAndRoot returns the mount point of the first file system of type
// fstype in mountinfo b, and the directory of that file system it
// mounts ("/" for all of it); "" if none.
func mountAndRoot(b []byte, fstype string) (mount, root string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == fstype && len(fields) > 4 {
				return unescapeMount(fields[4]), unescapeMount(fields[3])
			}
		}
	}
	return "", ""
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				out.WriteByte(v)
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}
