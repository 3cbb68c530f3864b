package main_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
)

// stderrLines collects a process's stderr lines: each on ch (dropped when
// it is full), and all of them in all, to read once done is closed.
type stderrLines struct {
	ch   chan string
	all  strings.Builder
	done chan struct{}
}

func readLines(t *testing.T, cmd *exec.Cmd) *stderrLines {
	t.Helper()
	r, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	l := &stderrLines{ch: make(chan string, 1000), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.all.WriteString(sc.Text() + "\n") // read only after done
			select {
			case l.ch <- sc.Text():
			default:
			}
		}
	}()
	return l
}

// TestBinaryBusAuth runs `gatework start` with two worker processes and
// JSON logs, then checks that: the embedded NATS refuses a raw NATS client
// without credentials or with a wrong password; the credentials are in a
// 0600 file beside the pid file (and work), on no process's command line,
// in no log line and not in `status`; the worker processes log JSON too;
// the file is removed at exit.
func TestBinaryBusAuth(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "gw.pid")
	env := append(withoutGatework(os.Environ()), "GATEWORK_PID_FILE="+pidFile)
	cmd := exec.Command(bin, "start", "--workers", "2", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0",
		"--http", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug")
	cmd.Env = env
	lines := readLines(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-lines.done; exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	// Ready, with two worker processes that log JSON.
	var ready map[string]any
	workersStarted := 0
	timeout := time.After(30 * time.Second)
	for ready == nil || workersStarted < 2 {
		select {
		case line := <-lines.ch:
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("not a JSON log line: %q", line)
			}
			if rec["msg"] == "gatework ready, try" {
				ready = rec
			}
			if rec["msg"] == "worker started" && rec["role"] == "worker" {
				workersStarted++
			}
		case <-timeout:
			t.Fatalf("not ready with 2 workers within 30s (ready %v, workers %d)", ready != nil, workersStarted)
		}
	}

	// The bus file.
	busFile := filepath.Join(dir, "gw.nats.env")
	st, err := os.Stat(busFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("bus file mode %v, want 0600", st.Mode().Perm())
	}
	vars := readEnvFile(t, busFile)
	url, user, password := vars["GATEWORK_NATS_URL"], vars["GATEWORK_NATS_USER"], vars["GATEWORK_NATS_PASSWORD"]
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || user == "" || len(password) < 32 {
		t.Fatalf("bus file: url %q user %q password of %d chars", url, user, len(password))
	}
	if !strings.Contains(ready["workers"].(string), busFile) {
		t.Errorf("the ready line does not point at the bus file: %v", ready["workers"])
	}

	// Raw NATS clients.
	for _, tt := range []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"wrong password", []nats.Option{nats.UserInfo(user, "wrong")}},
		{"node user", []nats.Option{nats.UserInfo("gatework-node", password)}},
	} {
		nc, err := nats.Connect(url, append(tt.opts, nats.NoReconnect())...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", tt.name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", tt.name, err)
		}
	}
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.NoReconnect())
	if err != nil {
		t.Fatalf("with the bus file's credentials: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Error(err)
	}
	nc.Close()

	// The worker processes serve with their credentials.
	wsURL := strings.TrimPrefix(ready["ws"].(string), "websocat ")
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "hi" {
		t.Fatalf("echo from a worker process: %q, %v", got, err)
	}
	_ = ws.Close()

	// Not on a command line (what ps shows), not in status.
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), password) {
			t.Errorf("%s holds the password", p)
		}
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"config"}} {
		c := exec.Command(bin, args...)
		c.Env = env
		out, err := c.CombinedOutput()
		if err != nil {
			t.Errorf("gatework %v: %v\n%s", args, err, out)
		}
		if strings.Contains(string(out), password) {
			t.Errorf("gatework %v shows the password", args)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gatework did not exit within 20s of SIGTERM")
	}
	if strings.Contains(lines.all.String(), password) {
		t.Error("the logs show the password")
	}
	if _, err := os.Stat(busFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bus file left after exit: %v", err)
	}
}

// readEnvFile reads the NAME='value' lines of a bus file.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		vars[k] = strings.Trim(v, "'")
	}
	return vars
}
