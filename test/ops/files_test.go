package ops

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// masterFiles are the files a master keeps beside its pid file.
func (n *node) masterFiles() (sock, busEnv string) {
	base := strings.TrimSuffix(n.pidFile, ".pid")
	return base + ".sock", base + ".nats.env"
}

// busPassword returns the worker password of the bus file.
func (n *node) busPassword() string {
	n.t.Helper()
	_, busEnv := n.masterFiles()
	f, err := os.Open(busEnv)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "GATEWORK_NATS_PASSWORD="); ok {
			return strings.Trim(v, "'")
		}
	}
	n.t.Fatalf("no GATEWORK_NATS_PASSWORD in %s", busEnv)
	return ""
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestWorkerSecrets: the bus password of the worker processes is in
// neither their environment nor their command line.
func TestWorkerSecrets(t *testing.T) {
	n := newNode(t)
	n.env = append(n.env, "GATEWORK_API_TOKEN=secret-api-token-0123456789")
	n.start()
	password := n.busPassword()
	if len(password) < 16 {
		t.Fatalf("password %q", password)
	}
	workers := n.status().workers()
	if len(workers) != 2 {
		t.Fatalf("workers %v", workers)
	}
	for pid := range workers {
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + f)
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{password, "secret-api-token-0123456789"} {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("worker %d: /proc/%d/%s holds a secret", pid, pid, f)
				}
			}
		}
	}
	// The workers serve all the same.
	c := n.dial()
	if pid := c.ask("hi"); !workers[pid] {
		t.Errorf("answered by %d, workers %v", pid, workers)
	}
}

// TestMasterFiles: a second master of the same pid file refuses to start
// (in the foreground too); a master killed outright leaves its files, and
// the next start takes them over; stop and stop -f leave no file behind.
func TestMasterFiles(t *testing.T) {
	n := newNode(t)
	n.start()
	first := n.master.Process.Pid
	if pid, err := n.masterPID(); err != nil || pid != first {
		t.Fatalf("pid file: %d, %v; master %d", pid, err, first)
	}
	sock, busEnv := n.masterFiles()

	// A second master in the foreground, and in the background.
	start := time.Now()
	for _, args := range [][]string{startArgs, append(startArgs[:len(startArgs):len(startArgs)], "-d")} {
		_, errOut, code := n.run(args...)
		want := fmt.Sprintf("gatework is already running (pid %d, pid file %s)", first, n.pidFile)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, %q; want exit 1 and %q", args, code, errOut, want)
		}
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the refusals took %v", took)
	}
	if pid, err := n.masterPID(); err != nil || pid != first || !running(first) {
		t.Fatalf("after the refusals: pid file %d (%v), master %d running %t", pid, err, first, running(first))
	}
	c := n.dial()
	c.ask("still served")

	// SIGKILL: the files stay.
	workers := n.status().workers()
	n.kill()
	for p := range workers {
		waitFor(t, 5*time.Second, "the workers to exit", func() bool { return !running(p) })
	}
	for _, f := range []string{n.pidFile, sock, busEnv} {
		if !exists(f) {
			t.Fatalf("%s gone after SIGKILL", f)
		}
	}

	// The next master takes them over; without worker processes it has
	// no bus file, and the stale one is gone.
	args := append(startArgs[:len(startArgs):len(startArgs)], "-d", "--workers", "0")
	if out, errOut, code := n.run(args...); code != 0 {
		t.Fatalf("start -d after SIGKILL: exit %d, %q %q", code, out, errOut)
	}
	second, err := n.masterPID()
	if err != nil || second == first {
		t.Fatalf("pid file %d, %v", second, err)
	}
	logs, _ := os.ReadFile(strings.TrimSuffix(n.pidFile, ".pid") + ".log")
	if !bytes.Contains(logs, []byte(`"msg":"pid file of a master that is gone taken over","pid":`+strconv.Itoa(first))) {
		t.Errorf("no take-over line:\n%s", logs)
	}
	if exists(busEnv) {
		t.Errorf("stale %s left", busEnv)
	}
	if !exists(sock) {
		t.Errorf("no control socket %s", sock)
	}
	if out, errOut, code := n.run("stop"); code != 0 {
		t.Fatalf("stop: exit %d, %q %q", code, out, errOut)
	}
	for _, f := range []string{n.pidFile, sock, busEnv} {
		if exists(f) {
			t.Errorf("stop left %s", f)
		}
	}

	// stop -f removes what the master would have.
	args = append(startArgs[:len(startArgs):len(startArgs)], "-d")
	if out, errOut, code := n.run(args...); code != 0 {
		t.Fatalf("start -d: exit %d, %q %q", code, out, errOut)
	}
	third, _ := n.masterPID()
	if !exists(busEnv) {
		t.Fatalf("no %s", busEnv)
	}
	if out, errOut, code := n.run("stop", "-f"); code != 0 || !strings.Contains(out, "gatework killed") {
		t.Fatalf("stop -f: exit %d, %q %q", code, out, errOut)
	}
	if running(third) {
		t.Errorf("master %d alive after stop -f", third)
	}
	for _, f := range []string{n.pidFile, sock, busEnv} {
		if exists(f) {
			t.Errorf("stop -f left %s", f)
		}
	}
	_ = syscall.Kill(-third, syscall.SIGKILL)
}

// TestWorkerGOMAXPROCSReachesChild: worker.gomaxprocs is in the worker
// processes' environment, over a GOMAXPROCS of the master's.
func TestWorkerGOMAXPROCSReachesChild(t *testing.T) {
	n := newNode(t)
	n.env = append(n.env, "GOMAXPROCS=2", "GATEWORK_WORKER_GOMAXPROCS=3")
	n.start()
	workers := n.status().workers()
	if len(workers) != 2 {
		t.Fatalf("workers %v", workers)
	}
	for pid := range workers {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range bytes.Split(b, []byte{0}) {
			if bytes.HasPrefix(kv, []byte("GOMAXPROCS=")) {
				got = append(got, string(kv))
			}
		}
		if len(got) != 1 || got[0] != "GOMAXPROCS=3" {
			t.Errorf("worker %d: environment has %q, want [GOMAXPROCS=3]", pid, got)
		}
	}
	if pid := n.dial().ask("hi"); !workers[pid] {
		t.Errorf("answered by %d, workers %v", pid, workers)
	}
}
