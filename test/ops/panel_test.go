package ops

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptm.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		ptm.Close()
		t.Skipf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptm.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		ptm.Close()
		t.Skipf("ptsname: %v", e)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		t.Skipf("open pts: %v", err)
	}
	return ptm, pts
}

// TestPanel drives the control panel through a pseudo-terminal: help,
// status, reload, a start refused while the node runs, history (arrow up),
// line editing (backspace) and exit.
func TestPanel(t *testing.T) {
	n := newNode(t)
	args := append(startArgs[:len(startArgs):len(startArgs)], "-d")
	if out, errOut, code := n.run(args...); code != 0 {
		t.Fatalf("start -d: exit %d, %q %q", code, out, errOut)
	}

	ptm, pts := openPTY(t)
	cmd := exec.Command(n.ctl)
	cmd.Env = append(n.env, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	screen := &lockedBuffer{}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			k, err := ptm.Read(buf)
			_, _ = screen.Write(buf[:k])
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		default:
			<-exited
		}
		ptm.Close()
		<-readDone
	})

	// send types keys and waits until the screen shows want count times.
	send := func(keys, want string, count int) {
		t.Helper()
		if _, err := ptm.Write([]byte(keys)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("%q after %q; screen:\n%s", want, keys, screen.String()), func() bool {
			return strings.Count(screen.String(), want) >= count
		})
	}
	waitFor(t, 10*time.Second, "the banner", func() bool {
		return strings.Contains(screen.String(), "control panel") && strings.Contains(screen.String(), "> ")
	})
	send("help\r", "stop [-f]", 1)
	for _, c := range []string{"help", "exit", "clear", "start [-d]", "restart [-d]", "reload", "status [--json]"} {
		if !strings.Contains(screen.String(), c) {
			t.Errorf("help lacks %q", c)
		}
	}
	send("statx\x7fus\r", "workers: 0 crashes", 1) // backspace edits
	send("reload\r", "reloaded: new worker processes serve", 1)
	send("\x1b[A\x1b[A\r", "workers: 0 crashes, 0 restarts, 1 reloads", 1) // history: status
	send("frob\r", `unknown command "frob"`, 1)
	send("start\r", "gatework is already running (pid ", 1) // refused, not a second node
	if _, err := ptm.Write([]byte("exit\r")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("panel exit: %v\n%s", err, screen.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the panel did not exit:\n%s", screen.String())
	}
	if _, _, code := n.run("stop"); code != 0 {
		t.Errorf("stop: exit %d", code)
	}
}
