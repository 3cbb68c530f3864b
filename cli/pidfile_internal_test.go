package cli

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPIDLock: one holder at a time; a file whose holder is gone (its
// descriptor closed, as at any exit) is taken over with the pid it holds;
// release removes the file; removeMasterFiles removes nothing while held.
func TestPIDLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "gw.pid")
	l, stale, err := lockPIDFile(path)
	if err != nil || stale != 0 {
		t.Fatalf("first lock: stale %d, %v", stale, err)
	}
	if _, _, err := lockPIDFile(path); !errors.As(err, new(*alreadyRunningError)) || err.Error() !=
		"gatework is already running (starting; pid file "+path+" is locked): stop it first, or give this node another pid_file" {
		t.Fatalf("second lock while starting: %v", err)
	}
	if err := l.write(4242); err != nil {
		t.Fatal(err)
	}
	if pid, err := readPID(path); err != nil || pid != 4242 {
		t.Fatalf("pid file: %d, %v", pid, err)
	}
	var held *alreadyRunningError
	if _, _, err := lockPIDFile(path); !errors.As(err, &held) || held.pid != 4242 {
		t.Fatalf("second lock: %v", err)
	}
	sock := socketPath(path)
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeMasterFiles(path, 0); !errors.As(err, &held) {
		t.Fatalf("removeMasterFiles while held: %v", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the holder's socket was removed: %v", err)
	}

	// The holder dies: the kernel drops its lock, the file stays.
	_ = l.f.Close()
	l, stale, err = lockPIDFile(path)
	if err != nil || stale != 4242 {
		t.Fatalf("take over: stale %d, %v", stale, err)
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("taken-over pid file holds %q until written", b)
	}
	l.release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("release left the pid file: %v", err)
	}

	// removeMasterFiles of a dead master's files.
	if err := os.WriteFile(path, []byte("77\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeMasterFiles(path, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, sock} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", f, err)
		}
	}
}
