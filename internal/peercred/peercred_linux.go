package peercred

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read reads the identity of the process at the other end of a Unix
// socket connection:
//
//   - PID, UID and GID from SO_PEERCRED: the effective ids of the process
//     that called connect(2), recorded by the kernel at that time (socket(7));
//   - the supplementary groups from SO_PEERGROUPS (Linux 4.13), recorded at
//     the same time, so they hold even if the process has since exited or
//     changed its groups;
//   - the executable, through a pidfd of the peer from SO_PEERPIDFD (Linux
//     6.5): /proc/PID/exe is read, and kept only if the pidfd shows that the
//     same process is still alive afterwards (a recycled PID lends nothing),
//     and only if the process is in this process's mount namespace (in
//     another, a path can name a different file). The pidfd is closed
//     before Read returns.
//
// The executable is read when Read runs, not when the peer connected: a
// process that execs between the two shows its new executable. See the
// root package's documentation of exe: principals for what that means.
//
//   - the cgroup v2 path, through the same pidfd: /proc/PID/cgroup's "0::"
//     line, kept only if the process is still alive afterwards, and, where
//     the kernel tells a pidfd's cgroup id (PIDFD_GET_INFO, Linux 6.13),
//     only if that id is the path's (a process that moved while it was
//     read is not given either cgroup).
//
// want's functions, when not nil, are asked with what was read so far
// whether the executable and the cgroup are needed, so that a caller
// refused on its uid costs no reads of /proc.
func Read(conn net.Conn, _ bool, want Want) (*Info, error) {
	var (
		ucred  *unix.Ucred
		groups []int
		grpErr error
		pidfd  = -1
		err    error
		info   *Info
	)
	if cerr := withFD(conn, func(fd int) {
		ucred, err = unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			return
		}
		groups, grpErr = peerGroups(fd)
		info = &Info{
			PID: int(ucred.Pid), HasPID: ucred.Pid > 0,
			UID: int(ucred.Uid), GID: int(ucred.Gid), HasUID: true,
		}
		if grpErr == nil {
			info.Groups, info.HasGroups = groups, true
		}
		if wants(want.Label, info) {
			info.Label, info.LabelErr = peerLabel(fd)
		} else {
			info.LabelErr = errors.New("not read: no rule names a label the caller could match")
		}
		if !wants(want.Cgroup, info) && !wants(want.Exe, info) {
			return
		}
		if p, perr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEERPIDFD); perr == nil {
			unix.CloseOnExec(p)
			pidfd = p
		}
	}); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", os.NewSyscallError("getsockopt SO_PEERCRED", err))
	}
	// With a cgroup to read, whether the executable is wanted is asked once
	// the cgroup is known: a rule may need both (exe: with unit:), and a
	// deny rule naming a unit matches a caller whose cgroup is unknown.
	cgroup := wants(want.Cgroup, info)
	exe := !cgroup && wants(want.Exe, info)
	var why error
	switch {
	case !exe && !cgroup:
	case pidfd < 0:
		why = errors.New("no pidfd for the peer (SO_PEERPIDFD needs Linux 6.5)")
	case !info.HasPID:
		unix.Close(pidfd)
		why = errors.New("the peer has no PID in this PID namespace")
	default:
		exe = readPinned(info, pidfd, cgroup, func() bool { return exe || wants(want.Exe, info) })
		unix.Close(pidfd)
	}
	if !cgroup {
		info.CgroupErr = errors.New("not read: no rule names a cgroup or unit the caller could match")
	} else if why != nil {
		info.CgroupErr = why
		exe = wants(want.Exe, info)
	}
	if !exe {
		info.ExeErr = errors.New("not read: the caller is refused whatever its executable")
	} else if why != nil {
		info.ExeErr = why
	}
	return info, nil
}

// wants says whether f, if set, wants the part for info.
func wants(f func(*Info) bool, info *Info) bool { return f != nil && f(info) }

// readPinned reads the cgroup, if asked, and then the executable, if
// wantExe says so given the cgroup, of the process pinned by pidfd,
// through one descriptor of its /proc directory, and keeps each only if
// the process is alive once both are read. It returns whether the
// executable was wanted.
func readPinned(info *Info, pidfd int, cgroup bool, wantExe func() bool) (exe bool) {
	dir, err := unix.Open("/proc/"+strconv.Itoa(info.PID), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		err = fmt.Errorf("reading /proc: %w", os.NewSyscallError("open /proc/PID", err))
		if cgroup {
			info.CgroupErr = err
		}
		if exe = wantExe(); exe {
			info.ExeErr = err
		}
		return exe
	}
	defer unix.Close(dir)
	if cgroup {
		info.Cgroup, info.CgroupErr = readCgroup(dir, pidfd)
	}
	if exe = wantExe(); exe {
		info.Exe, info.ExeErr = readExe(dir)
	}
	// Only now is it known that the PID was the pinned process throughout.
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil && !errors.Is(err, unix.EPERM) {
		gone := errors.New("the peer exited before its identity could be read")
		if info.Exe != nil {
			info.Exe, info.ExeErr = nil, gone
		}
		if info.Cgroup != "" {
			info.Cgroup, info.CgroupErr = "", gone
		}
	}
	return exe
}

// peerLabel reads SO_PEERSEC: the security context the Linux security
// module gave the peer's socket (socket(7)), recorded when it connected.
func peerLabel(fd int) (string, error) {
	s, err := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_PEERSEC)
	switch {
	case errors.Is(err, unix.ENOPROTOOPT):
		return "", errors.New("no security module labels sockets here (SO_PEERSEC: ENOPROTOOPT)")
	case err != nil:
		return "", fmt.Errorf("the peer's label: %w", os.NewSyscallError("getsockopt SO_PEERSEC", err))
	case s == "":
		return "", errors.New("the security module gave the peer's socket no label")
	}
	return s, nil
}

// peerGroups reads SO_PEERGROUPS: an array of gid_t whose size the kernel
// reports (ERANGE, with the size needed, when the buffer is short).
func peerGroups(fd int) ([]int, error) {
	buf := make([]uint32, 64)
	for range 2 {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch errno {
		case 0:
			gs := make([]int, n/4)
			for i := range gs {
				gs[i] = int(buf[i])
			}
			return gs, nil
		case unix.ERANGE:
			buf = make([]uint32, n/4+1)
			continue
		default:
			return nil, os.NewSyscallError("getsockopt SO_PEERGROUPS", errno)
		}
	}
	return nil, errors.New("getsockopt SO_PEERGROUPS: the group list kept growing")
}

// selfMountNS is this process's mount namespace.
var selfMountNS = sync.OnceValues(func() (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &st); err != nil {
		return fileID{}, err
	}
	return statID(&st), nil
})

func statID(st *unix.Stat_t) fileID {
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino), ok: true}
}

// readExe reads the executable of the process whose /proc directory is
// dir (readPinned checks afterwards that it was the pinned one).
func readExe(dir int) (*Executable, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, "exe", buf)
	if err != nil {
		return nil, fmt.Errorf("reading the executable: %w", os.NewSyscallError("readlink", err))
	}
	// Stat follows the link to the very file the process runs, whatever
	// its name now or in the peer's mount namespace. Only its device and
	// inode are asked for, from what the kernel holds (AT_STATX_DONT_SYNC):
	// a network or FUSE file system that stopped answering must not stall
	// the accepting goroutine.
	var exe unix.Statx_t
	if err := unix.Statx(dir, "exe", unix.AT_STATX_DONT_SYNC, unix.STATX_INO, &exe); err != nil {
		return nil, fmt.Errorf("reading the executable: %w", os.NewSyscallError("statx", err))
	}
	var ns unix.Stat_t
	if err := unix.Fstatat(dir, "ns/mnt", &ns, 0); err != nil {
		return nil, fmt.Errorf("reading the mount namespace: %w", os.NewSyscallError("stat", err))
	}
	self, err := selfMountNS()
	if err != nil {
		return nil, fmt.Errorf("reading this process's mount namespace: %w", err)
	}
	if !statID(&ns).same(self) {
		return nil, errors.New("the peer runs in another mount namespace, where paths may name other files")
	}
	if exe.Mask&unix.STATX_INO == 0 {
		return nil, errors.New("reading the executable: no inode number")
	}
	id := fileID{dev: unix.Mkdev(exe.Dev_major, exe.Dev_minor), ino: exe.Ino, ok: true}
	return &Executable{Path: string(buf[:n]), id: id}, nil
}
