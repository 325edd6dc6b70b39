package peercred

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReadChild reads the identity of process pid, a child of this process
// that has not been waited for, so that its PID cannot have been reused:
// the effective uid and gid and the supplementary groups from
// /proc/PID/status, and the executable through a pidfd as [Read] reads a
// peer's. It describes the child when ReadChild runs (after exec, when
// exec.Cmd.Start has returned).
func ReadChild(pid int) (*Info, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	info := &Info{PID: pid, HasPID: true}
	var haveUID, haveGID bool
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch key {
		case "Uid": // real, effective, saved, file system
			if len(f) >= 2 {
				info.UID, err = strconv.Atoi(f[1])
				haveUID = err == nil
			}
		case "Gid":
			if len(f) >= 2 {
				info.GID, err = strconv.Atoi(f[1])
				haveGID = err == nil
			}
		case "Groups":
			info.Groups = make([]int, 0, len(f))
			for _, g := range f {
				n, err := strconv.Atoi(g)
				if err != nil {
					return nil, fmt.Errorf("/proc/%d/status: groups %q", pid, val)
				}
				info.Groups = append(info.Groups, n)
			}
			info.HasGroups = true
		}
	}
	if !haveUID || !haveGID {
		return nil, fmt.Errorf("/proc/%d/status holds no Uid or Gid line", pid)
	}
	info.HasUID = true
	info.Exe, info.ExeErr = readExe(pid, pidfd)
	// The status was read before the process was known to be alive:
	// readExe's check through the pidfd says it was the same process.
	if info.Exe == nil && errors.Is(unix.PidfdSendSignal(pidfd, 0, nil, 0), unix.ESRCH) {
		return nil, fmt.Errorf("the child (pid %d) exited while its identity was read", pid)
	}
	return info, nil
}
