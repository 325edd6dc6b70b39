package children

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/grpcipc/grpcipc"
	"github.com/grpcipc/grpcipc/internal/testutil"
	"golang.org/x/sys/unix"
)

func init() {
	// parent-of-child: starts the child helper with StartChild, prints its
	// pid, and waits for standard input to close.
	testutil.RegisterHelper("parent-of-child", func([]string) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), testutil.HelperEnv+"=child")
		cmd.Stderr = os.Stderr
		child, err := grpcipc.StartChild(context.Background(), cmd)
		if err != nil {
			return err
		}
		defer child.Close()
		fmt.Println(child.PID())
		bufio.NewReader(os.Stdin).ReadString('\n')
		return nil
	})
	// stubborn: a child that takes its connection, then ignores SIGTERM
	// and the connection closing.
	testutil.RegisterHelper("stubborn", func([]string) error {
		signal.Ignore(syscall.SIGTERM)
		if _, err := grpcipc.ChildListener(); err != nil {
			return err
		}
		time.Sleep(time.Minute)
		return nil
	})
	// child-ignores-close: takes its connection, and waits for a signal
	// (SIGTERM's default action ends it).
	testutil.RegisterHelper("child-ignores-close", func([]string) error {
		if _, err := grpcipc.ChildListener(); err != nil {
			return err
		}
		time.Sleep(time.Minute)
		return nil
	})
	// delegate: a child that hands its inherited descriptor to a process
	// of its own, which sends the parent a connection of its making.
	testutil.RegisterHelper("delegate", func([]string) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), testutil.HelperEnv+"=child-impostor")
		cmd.ExtraFiles = []*os.File{os.NewFile(3, "inherited")}
		cmd.Stderr = os.Stderr
		return cmd.Run()
	})
	// child-impostor: sends a socket of its own making over inherited fd
	// 3, as ChildListener would, without its checks.
	testutil.RegisterHelper("child-impostor", func([]string) error {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(fds[1]), nil, 0); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // keep the connection open while the parent looks at it
		return nil
	})
	// child-sends MODE: answers the parent over fd 3 with what MODE says
	// instead of a proof of its own making, and waits.
	testutil.RegisterHelper("child-sends", func(args []string) error {
		var fds []int
		switch args[0] {
		case "unconnected":
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			fds = []int{fd}
		case "listening":
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@grpcipc-child-sends-" + strconv.Itoa(os.Getpid())}); err != nil {
				return err
			}
			if err := unix.Listen(fd, 1); err != nil {
				return err
			}
			fds = []int{fd}
		case "two":
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			fds = pair[:]
		case "none":
		}
		if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(fds...), nil, 0); err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		return nil
	})
	// child-lingers: sends a proof of its own making, as ChildListener
	// would, then attaches to the connection a TCP socket whose close
	// blocks (unsent data, SO_LINGER of an hour, a peer that never reads).
	testutil.RegisterHelper("child-lingers", func([]string) error {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(pair[1]), nil, 0); err != nil {
			return err
		}
		cleanup, err := sendLingering(3)
		if err != nil {
			return err
		}
		defer cleanup()
		fmt.Println("sent")
		time.Sleep(time.Minute)
		return nil
	})
	// lingers-at ENDPOINT: connects to a server and attaches a TCP socket
	// whose close blocks to the first byte it sends.
	testutil.RegisterHelper("lingers-at", func(args []string) error {
		ep, err := grpcipc.ParseEndpoint(args[0])
		if err != nil {
			return err
		}
		addr := ep.Address
		if ep.Transport == grpcipc.UnixAbstract {
			addr = "@" + addr
		}
		c, err := net.Dial("unix", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		f, err := c.(*net.UnixConn).File()
		if err != nil {
			return err
		}
		cleanup, err := sendLingering(int(f.Fd()))
		f.Close()
		if err != nil {
			return err
		}
		defer cleanup()
		fmt.Println("sent")
		time.Sleep(time.Minute)
		return nil
	})
	// spawn-first [call-parent]: before it calls ChildListener, starts a
	// process of its own (a shell) that prints the descriptors and the
	// environment it inherited, relays that on standard output up to a
	// line "end", then goes on as the child helper does.
	testutil.RegisterHelper("spawn-first", func(args []string) error {
		out, err := exec.Command("/bin/sh", "-c", "ls -l /proc/$$/fd; echo ENV; env").Output()
		if err != nil {
			return fmt.Errorf("the grandchild: %w", err)
		}
		fmt.Printf("%send\n", out)
		return childMain(args)
	})
	// forged: GRPCIPC_CHILD names a descriptor that is not an inherited
	// socket pair; ChildListener must refuse it and leave it open.
	// The descriptor is the argument: the variable is gone from the
	// environment once the package is initialised.
	testutil.RegisterHelper("forged", func(args []string) error {
		fd, _ := strconv.Atoi(args[0])
		_, err := grpcipc.ChildListener()
		fmt.Println("error:", err)
		if _, ferr := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); ferr != nil {
			fmt.Println("the descriptor was closed")
		}
		return nil
	})
}

// gone reports whether process pid has exited (a zombie no one reaped has).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// sendLingering sends "x" over the Unix socket fd with a descriptor whose
// last close blocks for an hour, so that the receiver holds the last
// reference, whenever it reads: the lingering TCP socket travels inside
// the queue of a socket pair's end, which is what is sent, and nothing of
// it stays open here. cleanup closes what holds the TCP socket's peer.
func sendLingering(fd int) (cleanup func(), err error) {
	f, cleanup, err := lingeringTCP()
	if err != nil {
		return nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		f.Close()
		cleanup()
		return nil, err
	}
	err = unix.Sendmsg(pair[0], []byte("y"), unix.UnixRights(int(f.Fd())), nil, 0)
	f.Close()
	unix.Close(pair[0])
	if err == nil {
		err = unix.Sendmsg(fd, []byte("x"), unix.UnixRights(pair[1]), nil, 0)
	}
	unix.Close(pair[1])
	if err != nil {
		cleanup()
		return nil, err
	}
	return cleanup, nil
}

// lingeringTCP returns a TCP socket whose last close blocks for an hour:
// its peer never reads, its queues are full, SO_LINGER is set. cleanup
// closes the listener that holds the other end.
func lingeringTCP() (*os.File, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: nothing is read
	if err != nil {
		return nil, nil, err
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	defer c.Close()
	chunk := make([]byte, 1<<20)
	c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		if _, err := c.Write(chunk); err != nil {
			break // the queues are full
		}
	}
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	if err := unix.SetsockoptLinger(int(f.Fd()), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 3600}); err != nil {
		f.Close()
		l.Close()
		return nil, nil, err
	}
	return f, func() { l.Close() }, nil
}
