package inherit

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCreatorAlive: a proof whose maker has exited is told apart from one
// whose maker lives (its PID alone could be a reused one). The maker is a
// Python process, which sends the proof over an inherited socket.
func TestCreatorAlive(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 to play the process that makes the proof")
	}
	pair, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "theirs")
	ours := os.NewFile(uintptr(pair[0]), "ours")
	defer ours.Close()
	cmd := exec.Command(python, "-c", `
import socket, sys
boot = socket.socket(fileno=3)
a, b = socket.socketpair()
socket.send_fds(boot, [b"x"], [b.fileno()])
sys.stdin.readline()
`)
	cmd.ExtraFiles = []*os.File{theirs}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	nc, err := net.FileConn(ours)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	proof, err := ReceiveProof(context.Background(), nc.(*net.UnixConn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(proof)
	if err := CheckProof(proof); err != nil {
		t.Errorf("CheckProof: %v", err)
	}
	if err := CreatorAlive(proof); err != nil {
		t.Errorf("CreatorAlive while its maker lives: %v", err)
	}
	stdin.Close()
	cmd.Wait()
	if err := CreatorAlive(proof); err == nil {
		t.Error("CreatorAlive after its maker exited: nil; want an error")
	}
}

// TestExited: a child is not exited while it runs, is once it has exited
// and before anything reaps it (Exited leaves it to be reaped: Wait still
// gets its status), and after.
func TestExited(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh to play the child")
	}
	cmd := exec.Command(sh, "-c", "read x; exit 3")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if Exited(pid) {
		t.Error("Exited of a running child: true")
	}
	stdin.Close() // the child exits
	deadline := time.Now().Add(10 * time.Second)
	for !Exited(pid) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the child did not exit within 10 s, or Exited does not see it")
		}
		time.Sleep(time.Millisecond)
	}
	err = cmd.Wait()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("Wait after Exited: %v; want exit status 3 (Exited must not reap)", err)
	}
	if !Exited(pid) {
		t.Error("Exited of a reaped child: false")
	}
}
