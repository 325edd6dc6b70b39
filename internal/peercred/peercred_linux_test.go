package peercred

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv(testutil.HelperEnv) == "connect" {
		// connect PATH: connect and wait for the other end to close.
		c, err := net.Dial("unix", os.Args[len(os.Args)-1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c.Read(make([]byte, 1))
		os.Exit(0)
	}
	if os.Getenv(testutil.HelperEnv) == "connect-exit" {
		// connect-exit PATH: connect, and exit at once.
		if _, err := net.Dial("unix", os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(testutil.HelperEnv) == "accept-read" {
		// accept-read PATH: listen at PATH, say "ready", and print the
		// cgroup Read reads of the first caller.
		l, err := net.Listen("unix", os.Args[len(os.Args)-1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("ready")
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		info, err := Read(c, true, Want{Cgroup: func(*Info) bool { return true }})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%q %v\n", info.Cgroup, info.CgroupErr)
		os.Exit(0)
	}
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// Read reports what the kernel recorded of a process of another user with
// more supplementary groups than Read's first buffer holds, and its
// executable by file identity.
func TestReadAnotherUsersGroupsAndExecutable(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.ShortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	var groups []int
	for g := 5000; g < 5100; g++ { // 100: more than the first buffer of 64
		groups = append(groups, g)
	}
	exe := testutil.SharedExecutable(t)
	cmd := exec.Command(exe, "-test.run=^$", path)
	cmd.Env = append(os.Environ(), testutil.HelperEnv+"=connect")
	cmd.Stderr = os.Stderr
	testutil.SetCredential(cmd, 12345, 12345, groups)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	l.(*net.UnixListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	info, err := Read(c, true, Want{Exe: func(*Info) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	if !info.HasUID || info.UID != 12345 || info.GID != 12345 || !info.HasPID || info.PID != cmd.Process.Pid {
		t.Errorf("pid %d uid %d gid %d (known %v %v); want pid %d uid 12345 gid 12345", info.PID, info.UID, info.GID, info.HasPID, info.HasUID, cmd.Process.Pid)
	}
	got := slices.Clone(info.Groups)
	slices.Sort(got)
	if !info.HasGroups || !slices.Equal(got, groups) {
		t.Errorf("groups %v (known %v); want the 100 groups 5000-5099", got, info.HasGroups)
	}
	if info.Exe == nil {
		t.Skipf("executable not read (%v): SO_PEERPIDFD needs Linux 6.5", info.ExeErr)
	}
	want, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Exe.IsFile(want) || info.Exe.Path != exe {
		t.Errorf("executable %s; want %s, the same file", info.Exe.Path, exe)
	}

	// A caller the server decides to refuse without it costs no /proc read.
	info, err = Read(c, true, Want{Exe: func(*Info) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	if info.Exe != nil || info.ExeErr == nil {
		t.Errorf("executable read although not wanted: %+v", info.Exe)
	}
}
