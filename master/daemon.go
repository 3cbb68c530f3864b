package master

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultDaemonReadyTimeout is DaemonConfig.ReadyTimeout's default.
const DefaultDaemonReadyTimeout = 60 * time.Second

// DaemonConfig says how Daemonize starts a detached master.
type DaemonConfig struct {
	// Path, Args and Env are the program, its arguments (without the
	// program name) and its environment; nil Env means this process's.
	Path string
	Args []string
	Env  []string
	// PIDFile is where the detached master writes its pid once it is
	// ready (PIDLock.Write).
	PIDFile string
	// LogFile receives its standard output and error, appended; its
	// directory is created if needed.
	LogFile string
	// ReadyTimeout bounds the wait for the pid; 0 means
	// DefaultDaemonReadyTimeout.
	ReadyTimeout time.Duration
}

// Daemonize starts cfg.Path detached (a session of its own, its output
// appended to cfg.LogFile) and blocks until it has written its pid into
// cfg.PIDFile, then returns that pid; the process goes on running. If it
// exits first, the error holds what it wrote to the log meanwhile (at
// most its last 4 KiB).
func Daemonize(cfg DaemonConfig) (int, error) {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultDaemonReadyTimeout
	}
	logPath := cfg.LogFile
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return 0, fmt.Errorf("log file: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	st, _ := logf.Stat()
	var logStart int64
	if st != nil {
		logStart = st.Size()
	}
	child := exec.Command(cfg.Path, cfg.Args...)
	child.Env = cfg.Env
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return 0, fmt.Errorf("start -d: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(cfg.ReadyTimeout)
	for {
		select {
		case err := <-exited:
			return 0, fmt.Errorf("gatework failed to start (%v); the end of %s:\n%s", exitText(err), logPath, logTail(logPath, logStart))
		case <-deadline:
			return 0, fmt.Errorf("gatework (pid %d) not ready within %v; see %s", child.Process.Pid, cfg.ReadyTimeout, logPath)
		case <-tick.C:
			if pid, err := ReadPID(cfg.PIDFile); err == nil && pid == child.Process.Pid {
				return pid, nil
			}
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// logTail returns the lines of path written from offset on, at most the
// last 4 KiB.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	b = b[offset:]
	if len(b) > 4096 {
		b = b[len(b)-4096:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// ProgramPath returns the path the master was started by, so that reloads
// run whatever is at that path then: os.Args[0] made absolute (or found
// in PATH), not resolved through symbolic links, so that a deployment
// that moves a link to a new release is followed; os.Executable() when
// that fails.
func ProgramPath() (string, error) {
	arg0 := os.Args[0]
	if !strings.Contains(arg0, string(filepath.Separator)) {
		if p, err := exec.LookPath(arg0); err == nil {
			arg0 = p
		}
	}
	if p, err := filepath.Abs(arg0); err == nil {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return os.Executable()
}
