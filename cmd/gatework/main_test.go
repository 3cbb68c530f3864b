package main_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

// binDir holds the binary built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatework-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	// nbio (linked in with the gateway) starts a task pool when its
	// package is initialised.
	if err := goleak.Find(goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3")); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
	buildOut  []byte
)

// build compiles the real binary (`go build -o $TMP/gatework
// ./cmd/gatework`), once.
func build(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(binDir, "gatework")
	buildOnce.Do(func() {
		buildOut, buildErr = exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return bin
}

// TestBinary runs `gatework start` as a newcomer would (with port-0
// addresses), talks to it over WebSocket, stops it with SIGTERM and
// checks a clean exit; then checks the exit codes of config check.
func TestBinary(t *testing.T) {
	bin := build(t)
	cmd := exec.Command(bin, "start", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json")
	// Its own pid file: a node another test or person runs with the
	// default one must not make this one refuse to start.
	cmd.Env = append(withoutGatework(os.Environ()), "GATEWORK_PID_FILE="+filepath.Join(t.TempDir(), "gw.pid"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var logs strings.Builder
	records := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				select {
				case records <- rec:
				default:
				}
			}
		}
		close(records)
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	var ready map[string]any
	timeout := time.After(20 * time.Second)
	for ready == nil {
		select {
		case rec, ok := <-records:
			if !ok {
				err := <-exited
				t.Fatalf("gatework exited before it was ready: %v", err)
			}
			if rec["msg"] == "gatework ready, try" {
				ready = rec
			}
		case <-timeout:
			t.Fatal("gatework not ready within 20s")
		}
	}
	wsURL := strings.TrimPrefix(ready["ws"].(string), "websocat ")
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	msg := []byte("hello\x00 \r\n")
	if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, got, err := ws.ReadMessage()
	if err != nil || typ != websocket.BinaryMessage || string(got) != string(msg) {
		t.Fatalf("echo: type %d %q, %v", typ, got, err)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The client still connected gets a close frame.
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("client got %v, want close 1001 (going away)", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gatework did not exit within 10s of SIGTERM")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if !strings.Contains(logs.String(), `"msg":"gatework stopped"`) {
		t.Errorf("no stop line in the logs:\n%s", logs.String())
	}
}

func TestBinaryConfigErrors(t *testing.T) {
	bin := build(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("listeners:\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    path: /x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		env      []string
		code     int
		inStderr string
	}{
		{[]string{"config", "check"}, nil, 0, ""},
		{[]string{"config", "check", "-c", bad}, nil, 1, bad + ":4: listeners[0].path: only for ws listeners"},
		{[]string{"start", "-c", bad}, nil, 1, bad + ":4: listeners[0].path: only for ws listeners"},
		{[]string{"start"}, []string{"GATEWORK_HTTP_PORT=1"}, 1, "env GATEWORK_HTTP_PORT: unknown environment variable"},
		{[]string{"stop"}, []string{"GATEWORK_PID_FILE=" + filepath.Join(t.TempDir(), "none.pid")}, 1, "gatework is not running"},
		{[]string{"frobnicate"}, nil, 1, `unknown command "frobnicate"`},
		{[]string{"version"}, nil, 0, ""},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = append(withoutGatework(os.Environ()), tt.env...)
		cmd.Stdout = io.Discard
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || !strings.Contains(stderr.String(), tt.inStderr) {
			t.Errorf("gatework %v: exit %d, stderr:\n%s\nwant exit %d with %q", tt.args, code, stderr.String(), tt.code, tt.inStderr)
		}
	}
}

// withoutGatework drops the GATEWORK_ variables of the test's own
// environment, which would change the binary's configuration.
func withoutGatework(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GATEWORK_") {
			out = append(out, kv)
		}
	}
	return out
}
