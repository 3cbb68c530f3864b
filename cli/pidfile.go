package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The pid file of a master is open and locked (flock, exclusive) for the
// master's whole life, from before it binds a port until after it removed
// its files. So a second master with the same pid file refuses to start,
// even while the first is still starting and has not written its pid yet;
// and a pid file that nobody locks was left by a master that is gone
// (killed by SIGKILL, say), whatever process now has its pid.

// alreadyRunningError: a live master holds the pid file.
type alreadyRunningError struct {
	pid     int // 0: the master is still starting (no pid written yet)
	pidFile string
}

func (e *alreadyRunningError) Error() string {
	if e.pid == 0 {
		return fmt.Sprintf("gatework is already running (starting; pid file %s is locked): stop it first, or give this node another pid_file", e.pidFile)
	}
	return fmt.Sprintf("gatework is already running (pid %d, pid file %s): stop it first, or give this node another pid_file", e.pid, e.pidFile)
}

// pidLock is the pid file held by this master.
type pidLock struct {
	path string
	f    *os.File // open and locked until release
}

// lockPIDFile takes path for this process: it creates it if needed and
// locks it. The error is an *alreadyRunningError when another live master
// holds it. stale is the pid a master that is gone left in it (0: none);
// the file is emptied until write.
func lockPIDFile(path string) (l *pidLock, stale int, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, 0, fmt.Errorf("pid file (set pid_file to a writable path): %w", err)
	}
	// A few rounds: the file may be removed (by its master's exit) between
	// our open and our lock, and then the lock is on a file nobody sees.
	for range 5 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, 0, fmt.Errorf("pid file (set pid_file to a writable path): %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				pid, _ := readPID(path)
				return nil, 0, &alreadyRunningError{pid: pid, pidFile: path}
			}
			return nil, 0, fmt.Errorf("pid file %s: lock: %w", path, err)
		}
		if !sameFile(f, path) {
			_ = f.Close()
			continue
		}
		b := make([]byte, 32)
		k, _ := f.ReadAt(b, 0)
		stale, _ = strconv.Atoi(strings.TrimSpace(string(b[:k])))
		if err := f.Truncate(0); err != nil {
			_ = f.Close()
			return nil, 0, fmt.Errorf("pid file: %w", err)
		}
		return &pidLock{path: path, f: f}, stale, nil
	}
	return nil, 0, fmt.Errorf("pid file %s: replaced while being locked, again and again", path)
}

// sameFile reports whether f is the file at path now.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// write writes pid to the file: from then on reload, stop and status find
// this master.
func (l *pidLock) write(pid int) error {
	s := strconv.Itoa(pid) + "\n"
	if _, err := l.f.WriteAt([]byte(s), 0); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := l.f.Truncate(int64(len(s))); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// release removes the file (if it is still the one locked) and unlocks
// it.
func (l *pidLock) release() {
	if sameFile(l.f, l.path) {
		_ = os.Remove(l.path)
	}
	_ = l.f.Close()
}

// masterFiles returns the files a master owns beside its pid file, but
// the pid file: the control socket and the bus credentials.
func masterFiles(pidFile string) []string {
	return []string{socketPath(pidFile), busEnvFile(pidFile)}
}

// removeMasterFiles removes the files of a master that is gone: the pid
// file, the control socket and the bus credentials. It removes nothing if
// a master holds the pid file (one may have started meanwhile), waiting up
// to wait for the lock: a killed process keeps its files open until its
// last thread has exited, after its pid may look gone.
func removeMasterFiles(pidFile string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	l, _, err := lockPIDFile(pidFile)
	for err != nil && time.Now().Before(deadline) {
		if _, held := errors.AsType[*alreadyRunningError](err); !held {
			break
		}
		time.Sleep(10 * time.Millisecond)
		l, _, err = lockPIDFile(pidFile)
	}
	if err != nil {
		return err
	}
	for _, p := range masterFiles(pidFile) {
		_ = os.Remove(p)
	}
	l.release()
	return nil
}

// readPID returns the pid in path.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: no pid in %q", path, b)
	}
	return pid, nil
}

// alive reports whether process pid exists and is not a zombie (one that
// exited and waits for its parent to reap it).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// /proc/<pid>/stat: "pid (comm) S ...", the state after the last ')'.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc: trust kill
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// runningPID returns the pid of the live master that holds path.
func runningPID(path string) (int, bool) {
	pid, err := readPID(path)
	if err != nil || !alive(pid) {
		return 0, false
	}
	return pid, true
}
