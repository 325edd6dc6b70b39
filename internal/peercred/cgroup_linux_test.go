package peercred

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestParseCgroupV2(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"0::/system.slice/backup.service\n", "/system.slice/backup.service", ""},
		{"12:pids:/\n1:name=systemd:/user.slice\n0::/user.slice/user-1000.slice/session-2.scope\n", "/user.slice/user-1000.slice/session-2.scope", ""},
		{"0::/\n", "/", ""},
		{"12:pids:/x\n1:name=systemd:/x\n", "", "no cgroup v2 hierarchy"},
		{"0::/../other\n", "", "outside this process's cgroup namespace"},
		{"0::/..\n", "", "outside this process's cgroup namespace"},
		{"0::relative\n", "", "not absolute"},
		{"0::/a/../b\n", "", "not clean"},
		{"", "", "no cgroup v2 hierarchy"},
	} {
		got, err := parseCgroupV2([]byte(tc.in))
		if got != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseCgroupV2(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestMountOf(t *testing.T) {
	info := "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n" +
		"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n" +
		"41 31 0:38 / /sys/fs/cgroup/un\\040ified rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
	if got := mountOf([]byte(info), "cgroup2"); got != "/sys/fs/cgroup/un ified" {
		t.Errorf("mountOf = %q", got)
	}
	if got := mountOf([]byte(info[:strings.Index(info, "41")]), "cgroup2"); got != "" {
		t.Errorf("mountOf without cgroup2 = %q", got)
	}
}

// testCgroup makes a cgroup under the v2 hierarchy for the test (root
// only), and returns its path in the hierarchy and a descriptor of its
// directory, removed when the test ends.
func testCgroup(t *testing.T, name string) (string, *os.File) {
	t.Helper()
	testutil.RequireRoot(t)
	root, err := cgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	p := "/grpcipc-test-" + strconv.Itoa(os.Getpid()) + "/" + name
	dir := root + p
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup (%v): the v2 hierarchy is not writable here", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		for d := dir; d != root; d = filepath.Dir(d) {
			for range 50 { // its last process may take a moment to leave
				err := os.Remove(d)
				if err == nil || errors.Is(err, os.ErrNotExist) || !errors.Is(err, unix.EBUSY) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
	return p, f
}

// connectFrom starts the helper mode (connect, connect-exit) in the cgroup
// whose directory is cg, and returns the accepted connection.
func connectFrom(t *testing.T, mode string, cg *os.File) (net.Conn, *exec.Cmd) {
	t.Helper()
	path := filepath.Join(testutil.ShortTempDir(t), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$", path)
	cmd.Env = append(os.Environ(), testutil.HelperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	l.(*net.UnixListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cmd
}

var always = func(*Info) bool { return true }

// TestReadCgroup: the cgroup v2 path of a process started in a cgroup
// made for the test is read through its pidfd; not at all when not
// wanted; as it is when read after the process moved; and not at all
// once the process has exited (its PID could name another by then).
func TestReadCgroup(t *testing.T) {
	p, cg := testCgroup(t, "system.slice/demo.service")
	// Made before the process starts, so that it is removed after the
	// process is gone (cleanups run last first).
	p2, cg2 := testCgroup(t, "system.slice/other.service")
	c, cmd := connectFrom(t, "connect", cg)

	info, err := Read(c, true, Want{Cgroup: always})
	if err != nil {
		t.Fatal(err)
	}
	if info.Cgroup == "" && info.CgroupErr != nil && strings.Contains(info.CgroupErr.Error(), "SO_PEERPIDFD") {
		t.Skipf("cgroup not read: %v", info.CgroupErr)
	}
	if info.Cgroup != p || info.CgroupErr != nil {
		t.Fatalf("cgroup %q (%v), want %q", info.Cgroup, info.CgroupErr, p)
	}
	if info.Exe != nil {
		t.Error("the executable was read, not wanted")
	}

	info, err = Read(c, true, Want{Cgroup: func(*Info) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	if info.Cgroup != "" || info.CgroupErr == nil || !strings.Contains(info.CgroupErr.Error(), "not read") {
		t.Errorf("cgroup read although not wanted: %q (%v)", info.Cgroup, info.CgroupErr)
	}

	// Moved: the cgroup it is in when read.
	root, _ := cgroup2Mount()
	if err := os.WriteFile(filepath.Join(root+p2, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	_ = cg2
	info, err = Read(c, true, Want{Cgroup: always})
	if err != nil {
		t.Fatal(err)
	}
	if info.Cgroup != p2 {
		t.Errorf("after the move: cgroup %q (%v), want %q", info.Cgroup, info.CgroupErr, p2)
	}
}

// TestReadCgroupOfExitedPeer: a peer that exited (and was reaped) before
// it was read gets no cgroup: its PID could name another process.
func TestReadCgroupOfExitedPeer(t *testing.T) {
	_, cg := testCgroup(t, "system.slice/gone.service")
	c, cmd := connectFrom(t, "connect-exit", cg)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	info, err := Read(c, true, Want{Cgroup: always, Exe: always})
	if err != nil {
		t.Fatal(err)
	}
	if info.Cgroup != "" || info.CgroupErr == nil || info.Exe != nil {
		t.Fatalf("a peer gone before the read: cgroup %q (%v), exe %v", info.Cgroup, info.CgroupErr, info.Exe)
	}
	t.Logf("cgroup of a reaped peer: %v", info.CgroupErr)
}

// TestReadLabel: SO_PEERSEC on a socket pair. With a security module that
// labels sockets (SELinux, AppArmor, Smack) the peer's label is read;
// without one (this project's CI machines) the error says so. Which of the
// two ran is logged.
func TestReadLabel(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "pair")
	defer f.Close()
	defer unix.Close(fds[1])
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := Read(c, true, Want{Label: always})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case info.Label != "":
		t.Logf("a security module labels sockets here: %q", info.Label)
	case info.LabelErr != nil && strings.Contains(info.LabelErr.Error(), "no security module"):
		t.Logf("no security module labels sockets here: %v", info.LabelErr)
	default:
		t.Fatalf("label %q, error %v", info.Label, info.LabelErr)
	}
	info, err = Read(c, true, Want{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Label != "" || info.LabelErr == nil || !strings.Contains(info.LabelErr.Error(), "not read") {
		t.Errorf("label read although not wanted: %q (%v)", info.Label, info.LabelErr)
	}
}

// TestReadCgroupFileBeyondAPage: /proc/PID/cgroup is read whole. On a
// hybrid machine the v1 lines come before the "0::" line, and a user
// whose v1 subtree is delegated (name=systemd) can make them long: a
// read of the first 4096 bytes only gave a cut "0::" path, a shorter one
// than the caller's, which only PIDFD_GET_INFO's id check (Linux 6.13)
// refused; before it, a deny rule naming a deeper cgroup missed the
// caller. A file longer than any the kernel writes is refused.
func TestReadCgroupFileBeyondAPage(t *testing.T) {
	d := t.TempDir()
	deep := "/user.slice/user-2002.slice/user@2002.service/app.slice/banned.service"
	pad := "1:name=systemd:/user.slice/user-2002.slice/user@2002.service/" + strings.Repeat("p", 4060) + "\n"
	for _, tc := range []struct{ content, want, err string }{
		{pad + "0::" + deep + "\n", deep, ""},
		{pad[:4030] + "\n0::" + deep + "\n", deep, ""}, // the "0::" line across the 4096th byte
		{strings.Repeat(pad, 40) + "0::" + deep + "\n", "", "longer"},
	} {
		if err := os.WriteFile(filepath.Join(d, "cgroup"), []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		dir, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readCgroupFile(dir)
		unix.Close(dir)
		if got != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("a file of %d bytes: %q, %v; want %q, %q", len(tc.content), got, err, tc.want, tc.err)
		}
	}
}

// TestReadCgroupFromAnotherCgroupNamespace: a server in a cgroup namespace
// of its own (rooted at its cgroup, the v2 hierarchy still mounted as
// the host's) reads callers' paths as its namespace names them. A caller
// outside that root ("/../...") gets none; one below it gets none either,
// since its path ("/sub/...") names another cgroup, or none, where the
// hierarchy is mounted, whatever exists at that path from the real root
// ("/SLICE/demo.service" here: a cgroup of that name exists at
// both places).
func TestReadCgroupFromAnotherCgroupNamespace(t *testing.T) {
	_, srvCg := testCgroup(t, "srv")
	_, outside := testCgroup(t, "system.slice/demo.service")
	root, _ := cgroup2Mount()
	// A slice name of this test's own, so that the cgroup made at the
	// real root below is no other test's (test/admission uses
	// /system.slice) and is removed whole.
	slice := "grpcipc-ns-" + strconv.Itoa(os.Getpid()) + ".slice"
	inside := filepath.Join(srvCg.Name(), slice, "demo.service")
	if err := os.MkdirAll(inside, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for d := inside; d != srvCg.Name(); d = filepath.Dir(d) {
			for range 50 {
				if err := os.Remove(d); err == nil || !errors.Is(err, unix.EBUSY) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
	// "/SLICE/demo.service" from the real root, too.
	if err := os.MkdirAll(root+"/"+slice+"/demo.service", 0o755); err == nil {
		t.Cleanup(func() {
			os.Remove(root + "/" + slice + "/demo.service")
			os.Remove(root + "/" + slice)
		})
	}
	in, err := os.Open(inside)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		caller *os.File
	}{{"outside the server's namespace", outside}, {"inside it", in}} {
		path := filepath.Join(testutil.ShortTempDir(t), "s.sock")
		srv := exec.Command(exe, "-test.run=^$", path)
		srv.Env = append(os.Environ(), testutil.HelperEnv+"=accept-read")
		srv.Stderr = os.Stderr
		srv.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(srvCg.Fd()), Cloneflags: unix.CLONE_NEWCGROUP}
		out := testutil.Start(t, srv)
		if line, err := out.ReadString('\n'); line != "ready\n" {
			t.Fatalf("server said %q, %v", line, err)
		}
		cl := exec.Command(exe, "-test.run=^$", path)
		cl.Env = append(os.Environ(), testutil.HelperEnv+"=connect")
		cl.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(tc.caller.Fd())}
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := out.ReadString('\n')
		cl.Process.Kill()
		cl.Wait()
		srv.Wait()
		t.Logf("%s: %s", tc.name, strings.TrimSpace(line))
		if !strings.HasPrefix(line, `"" `) {
			t.Errorf("%s: the server in its own cgroup namespace read %s", tc.name, line)
		}
	}
}

// TestReadCgroupOfReusedPID: a caller connects from gone.service and is
// reaped; its PID is then given (through ns_last_pid) to a new process
// in allowed.service before the connection is read. The read must not
// lend the newcomer's cgroup (nor its executable) to the dead caller.
func TestReadCgroupOfReusedPID(t *testing.T) {
	_, gone := testCgroup(t, "system.slice/gone.service")
	_, allowed := testCgroup(t, "system.slice/allowed.service")
	for attempt := 0; ; attempt++ {
		c, cmd := connectFrom(t, "connect-exit", gone)
		pid := cmd.Process.Pid
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Skipf("cannot choose the next PID: %v", err)
		}
		reuse := exec.Command("/bin/sleep", "30")
		reuse.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(allowed.Fd())}
		if err := reuse.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reuse.Process.Kill(); reuse.Wait() })
		if reuse.Process.Pid != pid {
			if attempt < 20 {
				continue // another process took it first
			}
			t.Skipf("PID %d not reused (got %d)", pid, reuse.Process.Pid)
		}
		info, err := Read(c, true, Want{Cgroup: always, Exe: always})
		if err != nil {
			t.Fatal(err)
		}
		if info.Cgroup != "" || info.CgroupErr == nil || info.Exe != nil {
			t.Fatalf("the dead caller's PID %d, now another process's: cgroup %q (%v), exe %v", pid, info.Cgroup, info.CgroupErr, info.Exe)
		}
		t.Logf("PID %d reused after %d attempts: %v", pid, attempt, info.CgroupErr)
		return
	}
}

// TestReadCgroupRemoved: the caller exits (a zombie, not yet reaped) and
// its cgroup is removed before the connection is read: no cgroup, an
// error, no panic. And the cgroup id of a path that names no cgroup (a
// cgroup removed between the read and the stat) is an error.
func TestReadCgroupRemoved(t *testing.T) {
	p, cg := testCgroup(t, "system.slice/removed.service")
	c, cmd := connectFrom(t, "connect-exit", cg)
	var si unix.Siginfo
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &si, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	root, _ := cgroup2Mount()
	var err error
	for range 100 {
		if err = os.Remove(root + p); err == nil || !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("removing the zombie's cgroup: %v", err)
	}
	info, err := Read(c, true, Want{Cgroup: always})
	if err != nil {
		t.Fatal(err)
	}
	if info.Cgroup != "" || info.CgroupErr == nil {
		t.Fatalf("a zombie whose cgroup is gone: cgroup %q (%v)", info.Cgroup, info.CgroupErr)
	}
	t.Logf("a zombie whose cgroup is gone: %v", info.CgroupErr)
	if id, err := cgroupID(p); err == nil {
		t.Errorf("cgroupID of the removed %s: %d, no error", p, id)
	}
	if id, err := cgroupID(strings.Repeat("/x", 3000)); err == nil {
		t.Errorf("cgroupID of a path longer than PATH_MAX: %d, no error", id)
	}
}

// TestCgroupMountRoot: a cgroup v2 mount of another namespace's root (the
// host's, seen from inside a cgroup namespace) is refused; a removed
// cgroup's path is no path.
func TestCgroupMountRoot(t *testing.T) {
	own := "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
	host := "41 31 0:38 /.. /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
	if m, err := cgroup2MountIn([]byte(own)); err != nil || m != "/sys/fs/cgroup" {
		t.Errorf("this namespace's mount: %q, %v", m, err)
	}
	if m, err := cgroup2MountIn([]byte(host)); err == nil || !strings.Contains(err.Error(), "not from this cgroup namespace's root") {
		t.Errorf("another namespace's mount: %q, %v", m, err)
	}
	if _, err := cgroup2MountIn(nil); err == nil {
		t.Error("no mount: no error")
	}
	if p, err := parseCgroupV2([]byte("0::/system.slice/x.service (deleted)\n")); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Errorf("a removed cgroup: %q, %v", p, err)
	}
}
