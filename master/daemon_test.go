package master_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatework/gatework/master"
)

// TestDaemonize: Daemonize returns the pid once the detached process
// wrote it into the pid file; a process that exits first is reported with
// the end of its log.
func TestDaemonize(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	pidFile, logFile := filepath.Join(dir, "gw.pid"), filepath.Join(dir, "logs", "gw.log")
	pid, err := master.Daemonize(master.DaemonConfig{
		Path: "/bin/sh", Args: []string{"-c", "echo started; echo $$ > " + pidFile + "; exec sleep 30"},
		PIDFile: pidFile, LogFile: logFile, ReadyTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 500 && master.Alive(pid); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	})
	if got, err := master.ReadPID(pidFile); err != nil || got != pid || !master.Alive(pid) {
		t.Errorf("pid %d, pid file %d (%v), alive %v", pid, got, err, master.Alive(pid))
	}
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("session %d (%v), want its own (%d)", sid, err, pid)
	}
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "started") {
		t.Errorf("log %q", b)
	}

	_, err = master.Daemonize(master.DaemonConfig{
		Path: "/bin/sh", Args: []string{"-c", "echo cannot bind; exit 3"},
		PIDFile: filepath.Join(dir, "other.pid"), LogFile: logFile, ReadyTimeout: 10 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "cannot bind") ||
		strings.Contains(err.Error(), "started") {
		t.Errorf("a process that exits: %v", err)
	}
}
