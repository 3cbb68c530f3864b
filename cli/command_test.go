package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/gatework/gatework/cli"
)

func TestMain(m *testing.M) {
	// nbio starts a task pool when its package is initialised.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"))
}

// run executes the command line args in-process.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd, err := cli.NewCommand(apps...)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "good.yaml", "worker:\n  app: chat\nhttp:\n  addr: 127.0.0.1:9999\n")
	bad := writeFile(t, "bad.yaml", "http:\n  adr: x\nlisteners:\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    framing: {kind: length, length_size: 3}\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantOut string
		wantErr []string
	}{
		{name: "good file", args: []string{"config", "check", "-c", good}, wantOut: good + ": configuration OK\n"},
		{name: "defaults", args: []string{"config", "check"}, wantOut: "defaults: configuration OK\n"},
		{name: "file from GATEWORK_CONFIG", args: []string{"config", "check"}, env: map[string]string{"GATEWORK_CONFIG": good},
			wantOut: good + ": configuration OK\n"},
		{name: "bad file", args: []string{"config", "check", "-c", bad}, wantErr: []string{
			"Error: invalid configuration, 2 problems:\n",
			"\n  " + bad + ":2: http.adr: unknown key (did you mean http.addr?)\n",
			"\n  " + bad + ":6: listeners[0].framing.length_size: must be 1, 2 or 4, got 3\n",
		}},
		{name: "missing file", args: []string{"config", "check", "-c", bad + ".missing"}, wantErr: []string{
			"Error: invalid configuration, 1 problem:\n  " + bad + ".missing: cannot read: no such file or directory\n",
		}},
		{name: "good file, bad environment and flags", args: []string{"config", "check", "-c", good, "--app", "pong", "--log-level", "loud"},
			env: map[string]string{"GATEWORK_HTTP_ADRR": "x"},
			wantErr: []string{
				"env GATEWORK_HTTP_ADRR: unknown environment variable",
				`flag --app: worker.app: unknown app "pong": echo, chat or none`,
				`flag --log-level: log.level: "loud" is not debug, info, warn or error`,
			}},
		{name: "listener flag without the listener", args: []string{"config", "check", "-c",
			writeFile(t, "tcponly.yaml", "listeners:\n  - {protocol: tcp, addr: \"127.0.0.1:0\"}\n"), "--ws", "127.0.0.1:1"},
			wantErr: []string{`flag --ws: listeners: no listener named "ws": the listeners are tcp`}},
		{name: "bad listener flag", args: []string{"config", "check", "--tcp", "7273"},
			wantErr: []string{`flag --tcp: listeners[1].addr: "7273" is not host:port`}},
		{name: "unknown command", args: []string{"frobnicate"},
			wantErr: []string{`Error: unknown command "frobnicate" for "gatework"`}},
		{name: "unknown flag", args: []string{"start", "--colour", "blue"},
			wantErr: []string{"Error: unknown flag: --colour", "Run 'gatework start --help' for usage."}},
		{name: "stray argument", args: []string{"config", "check", "extra"},
			wantErr: []string{`Error: unknown command "extra" for "gatework config check"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, errOut, err := run(t, tt.args...)
			if tt.wantErr == nil {
				if err != nil || out != tt.wantOut {
					t.Errorf("got %q, %v (stderr %q); want %q", out, err, errOut, tt.wantOut)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; stdout %q", out)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "gatework.yaml", "http:\n  addr: 127.0.0.1:9001\n  timeout: 7s\nlog:\n  level: debug\n  format: json\nworker:\n  app: chat\n")
	t.Setenv("GATEWORK_HTTP_ADDR", "127.0.0.1:9002") // env over file
	t.Setenv("GATEWORK_LOG_LEVEL", "warn")
	t.Setenv("GATEWORK_API_TOKEN", "s3cret")
	out, errOut, err := run(t, "config", "-c", file, "--http", "127.0.0.1:9003", "--log-level", "error", "--ws", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, want := range []string{
		"addr: 127.0.0.1:9003\n", // flag over env over file
		"level: error\n",         // flag over env
		"format: json\n",         // file over default
		"timeout: 7s\n",          // file
		"app: chat\n",            // file
		"token: '*****'\n",       // env, masked
		"addr: 127.0.0.1:0\n",    // --ws
		"addr: " + cli.DefaultTCPAddr + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret") {
		t.Error("secret printed")
	}
	// Without the flag, the environment wins over the file.
	out, _, err = run(t, "config", "-c", file)
	if err != nil || !strings.Contains(out, "addr: 127.0.0.1:9002\n") || !strings.Contains(out, "level: warn\n") {
		t.Errorf("env over file: %v\n%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "gatework ") {
		t.Errorf("version: %q, %v", out, err)
	}
}

func TestNewCommandRejectsBadApps(t *testing.T) {
	for _, a := range [][]cli.App{{{Name: "none"}}, {{Name: ""}}, {{Name: "x"}, {Name: "x"}}} {
		if _, err := cli.NewCommand(a...); err == nil {
			t.Errorf("NewCommand(%v) accepted", a)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLine finds the first JSON log record whose fields include want.
func logLine(logs string, want map[string]string) map[string]any {
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		match := true
		for k, v := range want {
			if rec[k] != v {
				match = false
			}
		}
		if match {
			return rec
		}
	}
	return nil
}

// TestStartInProcess runs `start` with port-0 listeners, talks to it and
// stops it by cancelling its context.
func TestStartInProcess(t *testing.T) {
	cmd, err := cli.NewCommand(apps...)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd.SetOut(io.Discard)
	cmd.SetErr(&logs)
	// One worker inside this process: worker processes would be copies
	// of the test binary.
	t.Setenv("GATEWORK_PID_FILE", filepath.Join(t.TempDir(), "gatework.pid"))
	cmd.SetArgs([]string{"start", "--workers", "0", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	var ready map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for ready == nil {
		select {
		case err := <-done:
			t.Fatalf("start returned early: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
		ready = logLine(logs.String(), map[string]string{"msg": "gatework ready, try"})
	}
	wsURL := strings.TrimPrefix(ready["ws"].(string), "websocat ")
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("ping \x00\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "ping \x00\r\n" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	httpRec := logLine(logs.String(), map[string]string{"msg": "http: listening"})
	resp, err := http.Get(httpRec["health"].(string))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
	if logLine(logs.String(), map[string]string{"level": "WARN", "msg": "http: WARNING: no API token is set: the HTTP API and /metrics serve loopback clients only; set http.tokens, http.token or GATEWORK_API_TOKEN"}) == nil {
		t.Errorf("no warning about the missing token:\n%s", logs.String())
	}
	for _, l := range []string{"ws", "tcp"} {
		if logLine(logs.String(), map[string]string{"msg": "listening", "listener": l}) == nil {
			t.Errorf("no listening line for %s", l)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("start: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("start did not return after cancel")
	}
	if logLine(logs.String(), map[string]string{"msg": "gatework stopped"}) == nil {
		t.Errorf("no stop line:\n%s", logs.String())
	}
}
