package main_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/internal/testpki"
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

// node is a running `gatework start` of a test.
type node struct {
	cmd    *exec.Cmd
	lines  *stderrLines
	exited chan error
	ready  map[string]any // the "gatework ready, try" record
}

// startNode runs `gatework start --log-format json` with args and env and
// waits until it is ready and workers worker processes logged their start
// in JSON. It is killed at the end of the test unless stopped.
func startNode(t *testing.T, bin string, env []string, workers int, args ...string) *node {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"start", "--log-format", "json", "--workers", strconv.Itoa(workers)}, args...)...)
	cmd.Env = env
	n := &node{cmd: cmd, lines: readLines(t, cmd), exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { <-n.lines.done; n.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-n.exited
		}
	})
	workersStarted := 0
	timeout := time.After(30 * time.Second)
	for n.ready == nil || workersStarted < workers {
		select {
		case line := <-n.lines.ch:
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("not a JSON log line: %q", line)
			}
			if rec["msg"] == "gatework ready, try" {
				n.ready = rec
			}
			if rec["msg"] == "worker started" && rec["role"] == "worker" {
				workersStarted++
			}
		case err := <-n.exited:
			t.Fatalf("gatework exited: %v", err)
		case <-timeout:
			t.Fatalf("not ready with %d workers within 30s (ready %v, workers %d)", workers, n.ready != nil, workersStarted)
		}
	}
	return n
}

// echo checks that a WebSocket client of n gets its message back.
func (n *node) echo(t *testing.T, msg string) {
	t.Helper()
	wsURL := strings.TrimPrefix(n.ready["ws"].(string), "websocat ")
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != msg {
		t.Fatalf("echo from a worker process: %q, %v", got, err)
	}
}

// stop sends SIGTERM and waits for a clean exit; it returns the logs.
func (n *node) stop(t *testing.T) string {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n.exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gatework did not exit within 20s of SIGTERM")
	}
	return n.lines.all.String()
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
	n := startNode(t, bin, env, 2, "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "debug")
	ready := n.ready

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
	n.echo(t, "hi")

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

	if strings.Contains(n.stop(t), password) {
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

// TestBinaryBusTLS runs `gatework start` whose embedded NATS serves TLS
// (nats.tls from the environment): the worker process connects over TLS
// with the CA it gets from the master and serves; the bus file names the
// tls:// URL and the CA; a client that does not trust the CA is refused.
func TestBinaryBusTLS(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	ca, cert, key := testpki.Write(t, dir)
	env := append(withoutGatework(os.Environ()), "GATEWORK_PID_FILE="+filepath.Join(dir, "gw.pid"),
		"GATEWORK_NATS_TLS_CA_FILE="+ca, "GATEWORK_NATS_TLS_CERT_FILE="+cert, "GATEWORK_NATS_TLS_KEY_FILE="+key)
	n := startNode(t, bin, env, 1, "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "")
	n.echo(t, "over a TLS bus")
	vars := readEnvFile(t, filepath.Join(dir, "gw.nats.env"))
	url := vars["GATEWORK_NATS_URL"]
	if !strings.HasPrefix(url, "tls://127.0.0.1:") || vars["GATEWORK_NATS_TLS_CA_FILE"] != ca {
		t.Fatalf("bus file: url %q, CA %q", url, vars["GATEWORK_NATS_TLS_CA_FILE"])
	}
	creds := nats.UserInfo(vars["GATEWORK_NATS_USER"], vars["GATEWORK_NATS_PASSWORD"])
	if nc, err := nats.Connect(url, creds, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("connected without trusting the CA")
	}
	nc, err := nats.Connect(url, creds, nats.RootCAs(ca), nats.NoReconnect())
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Errorf("not TLS: %v", err)
	}
	nc.Close()
	n.stop(t)
}
