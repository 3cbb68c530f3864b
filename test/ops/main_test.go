// Package ops tests the operations of a node through the real binary:
// start (master and worker processes), crash restarts, reload under load,
// reload with a broken binary, start -d, status and stop. The binary is
// ./opsapp: gatework's command line with an app that answers
// "<pid> <message>".
package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/internal/testwait"
)

// binDir holds the opsapp binary; made by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatework-ops-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}

var (
	buildOnce sync.Once
	buildErr  error
)

// binary builds ./opsapp once and returns a private copy of it for the
// test (which may replace it on disk).
func binary(t *testing.T) string {
	t.Helper()
	built := filepath.Join(binDir, "opsapp")
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		out, err := exec.Command(goTool, "build", "-o", built, "./opsapp").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./opsapp: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	b, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "opsapp")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// running reports whether process pid exists and is not a zombie.
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// node is a node run by a test: its binary, pid file and environment.
type node struct {
	t       *testing.T
	bin     string // the binary on disk, which the master runs its workers from
	ctl     string // an untouched copy for the commands (reload, stop, status)
	dir     string
	pidFile string
	env     []string
	master  *exec.Cmd // the foreground master, or nil
	logs    *lockedBuffer
	done    chan struct{}
	ws      string // WebSocket URL
}

// newNode prepares a node in a temporary directory.
func newNode(t *testing.T) *node {
	bin := binary(t)
	ctl := bin + "-ctl"
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ctl, b, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(bin)
	n := &node{t: t, bin: bin, ctl: ctl, dir: dir, pidFile: filepath.Join(dir, "gw.pid")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEWORK_") && !strings.HasPrefix(kv, "_GATEWORK_") {
			n.env = append(n.env, kv)
		}
	}
	n.env = append(n.env, "GATEWORK_PID_FILE="+n.pidFile, "GATEWORK_LOG_FORMAT=json", "GATEWORK_SHUTDOWN_TIMEOUT=5s")
	t.Cleanup(n.kill)
	return n
}

// startArgs are the arguments of start: port-0 listeners, 2 workers.
var startArgs = []string{"start", "--app", "pid", "--workers", "2",
	"--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"}

// start runs the master in the foreground (its own process group) and
// waits until it is ready.
func (n *node) start() {
	n.t.Helper()
	n.startWith(startArgs...)
}

// startWith is start with the given arguments.
func (n *node) startWith(args ...string) {
	t := n.t
	t.Helper()
	cmd := exec.Command(n.bin, args...)
	cmd.Env = n.env
	n.logs = &lockedBuffer{}
	cmd.Stderr = n.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.master = cmd
	n.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.done)
	}()
	waitFor(t, 30*time.Second, "the master to be ready", func() bool {
		select {
		case <-n.done:
			t.Fatalf("the master exited:\n%s", n.logs.String())
		default:
		}
		return n.readyLine(n.logs.String())
	})
}

// readyLine looks for the ready log line in logs and notes the ws URL.
func (n *node) readyLine(logs string) bool {
	for _, l := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "gatework ready, try" {
			n.ws = strings.TrimPrefix(rec["ws"].(string), "websocat ")
			return true
		}
	}
	return false
}

// getStats calls the node's POST /api/getStats, at the console URL its
// "http: listening" log line gives.
func (n *node) getStats() api.Stats {
	t := n.t
	t.Helper()
	base := ""
	for _, l := range strings.Split(n.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "http: listening" {
			base, _ = rec["console"].(string)
		}
	}
	if base == "" {
		t.Fatalf("no console URL in the logs:\n%s", n.logs.String())
	}
	resp, err := http.Post(base+"api/getStats", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Result api.Stats `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("getStats: %s: %v", resp.Status, err)
	}
	return body.Result
}

// kill ends the master's process group and every worker it had.
func (n *node) kill() {
	var pids []int
	if pid, err := n.masterPID(); err == nil {
		pids = append(pids, pid)
	}
	if n.master != nil {
		pids = append(pids, n.master.Process.Pid)
	}
	for _, pid := range pids {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if n.done != nil {
		<-n.done
	}
}

func (n *node) masterPID() (int, error) {
	b, err := os.ReadFile(n.pidFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// runTimeout bounds a command of run: one that should have exited but
// runs on (a second master) is killed and fails the test.
const runTimeout = time.Minute

// run runs a command of the control binary and returns its output and
// exit code.
func (n *node) run(args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.ctl, args...)
	cmd.Env = n.env
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		n.t.Fatalf("%v: still running after %v, killed: %q %q", args, runTimeout, out.String(), errOut.String())
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		n.t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// status is the part of `status --json` the tests read.
type status struct {
	Processes []struct {
		Role        string `json:"role"`
		Name        string `json:"name"`
		PID         int    `json:"pid"`
		Failing     bool   `json:"failing"`
		LastExit    string `json:"last_exit"`
		Connections *int   `json:"connections"`
		Generation  *int   `json:"generation"`
		Ready       *bool  `json:"ready"`
		Restarts    *int   `json:"restarts"`
		Bus         string `json:"bus"`
		Worker      *struct {
			Messages uint64 `json:"messages"`
			Tasks    struct {
				Taken uint64 `json:"taken"`
			} `json:"tasks"`
		} `json:"worker"`
		Gateway *struct {
			Redelivered uint64 `json:"redelivered"`
			MessagesIn  uint64 `json:"messages_in"`
			MessagesOut uint64 `json:"messages_out"`
			BytesIn     uint64 `json:"bytes_in"`
			BytesOut    uint64 `json:"bytes_out"`
			UIDs        int    `json:"uids"`
			Groups      int    `json:"groups"`
		} `json:"gateway"`
		Rates *struct {
			MessagesIn float64 `json:"messages_in"`
		} `json:"rates"`
	} `json:"processes"`
	Gateways struct {
		Crashes  uint64 `json:"crashes"`
		Restarts uint64 `json:"restarts"`
	} `json:"gateways"`
	Workers struct {
		Crashes       uint64 `json:"crashes"`
		Restarts      uint64 `json:"restarts"`
		Reloads       uint64 `json:"reloads"`
		FailedReloads uint64 `json:"failed_reloads"`
	} `json:"workers"`
	Tasks *struct {
		Done    uint64 `json:"done"`
		Retried uint64 `json:"retried"`
		Lost    uint64 `json:"lost"`
	} `json:"tasks"`
}

func (n *node) status() status {
	n.t.Helper()
	out, errOut, code := n.run("status", "--json")
	if code != 0 {
		n.t.Fatalf("status: exit %d: %s", code, errOut)
	}
	var s status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		n.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return s
}

// redelivered returns the gateway's count of redelivered batches.
func (s status) redelivered() uint64 {
	for _, p := range s.Processes {
		if p.Gateway != nil {
			return p.Gateway.Redelivered
		}
	}
	return 0
}

// workers returns the pids of the ready worker processes by pid.
func (s status) workers() map[int]bool {
	m := map[int]bool{}
	for _, p := range s.Processes {
		if p.Role == "worker" && p.Ready != nil && *p.Ready {
			m[p.PID] = true
		}
	}
	return m
}

// client is a WebSocket client of the pid app.
type client struct {
	t  *testing.T
	ws *websocket.Conn
}

func (n *node) dial() *client {
	n.t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(n.ws, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { _ = ws.Close() })
	return &client{t: n.t, ws: ws}
}

// ask sends msg and returns the pid that answered.
func (c *client) ask(msg string) int {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		c.t.Fatal(err)
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, got, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("reply to %q: %v", msg, err)
	}
	pid, _, rest := parseReply(got)
	if rest != msg {
		c.t.Fatalf("reply to %q: %q", msg, got)
	}
	return pid
}

// parseReply splits a reply of the pid app, "<pid>:<build> <message>".
func parseReply(reply []byte) (pid int, build, msg string) {
	head, msg, _ := strings.Cut(string(reply), " ")
	p, build, _ := strings.Cut(head, ":")
	pid, _ = strconv.Atoi(p)
	return pid, build, msg
}
