package master

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPIDLock: one holder at a time; a file whose holder is gone (its
// descriptor closed, as at any exit) is taken over with the pid it holds;
// release removes the file; RemoveFiles removes nothing while held.
func TestPIDLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "gw.pid")
	l, stale, err := LockPIDFile(path)
	if err != nil || stale != 0 {
		t.Fatalf("first lock: stale %d, %v", stale, err)
	}
	if _, _, err := LockPIDFile(path); !errors.As(err, new(*AlreadyRunningError)) || err.Error() !=
		"gatework is already running (starting; pid file "+path+" is locked): stop it first, or give this node another pid_file" {
		t.Fatalf("second lock while starting: %v", err)
	}
	if err := l.Write(4242); err != nil {
		t.Fatal(err)
	}
	if pid, err := ReadPID(path); err != nil || pid != 4242 {
		t.Fatalf("pid file: %d, %v", pid, err)
	}
	var held *AlreadyRunningError
	if _, _, err := LockPIDFile(path); !errors.As(err, &held) || held.PID != 4242 {
		t.Fatalf("second lock: %v", err)
	}
	sock := SocketPath(path)
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveFiles(path, []string{sock}, 0); !errors.As(err, &held) {
		t.Fatalf("RemoveFiles while held: %v", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the holder's socket was removed: %v", err)
	}

	// The holder dies: the kernel drops its lock, the file stays.
	_ = l.f.Close()
	l, stale, err = LockPIDFile(path)
	if err != nil || stale != 4242 {
		t.Fatalf("take over: stale %d, %v", stale, err)
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("taken-over pid file holds %q until written", b)
	}
	l.Release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("release left the pid file: %v", err)
	}

	// RemoveFiles of a dead master's files.
	if err := os.WriteFile(path, []byte("77\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveFiles(path, []string{sock}, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, sock} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", f, err)
		}
	}
}
