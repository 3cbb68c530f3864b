package master

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

// AlreadyRunningError: a live master holds the pid file.
type AlreadyRunningError struct {
	// PID is the master's pid; 0 while it is still starting (no pid
	// written yet).
	PID int
	// PIDFile is the path of the pid file.
	PIDFile string
}

// Error says that gatework is running and how to start another node.
func (e *AlreadyRunningError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("gatework is already running (starting; pid file %s is locked): stop it first, or give this node another pid_file", e.PIDFile)
	}
	return fmt.Sprintf("gatework is already running (pid %d, pid file %s): stop it first, or give this node another pid_file", e.PID, e.PIDFile)
}

// SocketPath returns the control socket beside pidFile: the same path
// with .sock instead of .pid.
func SocketPath(pidFile string) string {
	return strings.TrimSuffix(pidFile, ".pid") + ".sock"
}

// PIDLock is the pid file held by this master, open and locked until
// Release. Its methods are not safe for concurrent use.
type PIDLock struct {
	path string
	f    *os.File // open and locked until release
}

// LockPIDFile takes path for this process: it creates it if needed and
// locks it. The error is an *AlreadyRunningError when another live master
// holds it. stale is the pid a master that is gone left in it (0: none);
// the file is emptied until Write.
func LockPIDFile(path string) (l *PIDLock, stale int, err error) {
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
				pid, _ := ReadPID(path)
				return nil, 0, &AlreadyRunningError{PID: pid, PIDFile: path}
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
		return &PIDLock{path: path, f: f}, stale, nil
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

// Write writes pid to the file: from then on reload, stop and status find
// this master.
func (l *PIDLock) Write(pid int) error {
	s := strconv.Itoa(pid) + "\n"
	if _, err := l.f.WriteAt([]byte(s), 0); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := l.f.Truncate(int64(len(s))); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// Release removes the file (if it is still the one locked) and unlocks
// it.
func (l *PIDLock) Release() {
	if sameFile(l.f, l.path) {
		_ = os.Remove(l.path)
	}
	_ = l.f.Close()
}

// RemoveFiles removes the files of a master that is gone: the pid file
// and files, those it kept beside it (control socket, credentials). It
// removes nothing if a master holds the pid file (one may have started
// meanwhile), waiting up to wait for the lock: a killed process keeps its
// files open until its last thread has exited, after its pid may look
// gone. The error is then an *AlreadyRunningError.
func RemoveFiles(pidFile string, files []string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	l, _, err := LockPIDFile(pidFile)
	for err != nil && time.Now().Before(deadline) {
		if _, held := errors.AsType[*AlreadyRunningError](err); !held {
			break
		}
		time.Sleep(10 * time.Millisecond)
		l, _, err = LockPIDFile(pidFile)
	}
	if err != nil {
		return err
	}
	for _, p := range files {
		_ = os.Remove(p)
	}
	l.Release()
	return nil
}

// ReadPID returns the pid in path.
func ReadPID(path string) (int, error) {
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

// Alive reports whether process pid exists and is not a zombie (one that
// exited and waits for its parent to reap it).
func Alive(pid int) bool {
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

// RunningPID returns the pid of the live master that holds path.
func RunningPID(path string) (int, bool) {
	pid, err := ReadPID(path)
	if err != nil || !Alive(pid) {
		return 0, false
	}
	return pid, true
}
