package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

func TestMain(m *testing.M) {
	// nbio starts a task pool when its package is initialised.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"))
}

// maxMessage is the WebSocket listener's max_message in these tests.
const maxMessage = 64 << 10

// scriptTimeout bounds one client script, browser start included.
const scriptTimeout = 90 * time.Second

// badUTF8 is what the app's "bad-utf8" command sends with Send (not
// SendBinary): the gateway must deliver it in a binary frame.
var badUTF8 = []byte{0xff, 0xfe, 'o', 'k'}

// testApp is the app the clients talk to. Text commands:
//
//	bind <uid>  binds the uid, answers "bound <uid>"
//	join <g>    joins group g, answers "joined <g>"
//	bad-utf8    answers badUTF8 with Send
//	close       answers "closing", then closes the client (close 1000)
//
// Anything else is echoed byte for byte, text as text, binary as binary.
// An upgrade whose query has deny=<status> is rejected with that status
// and the reason "denied by the app" (an HTTP answer on the hook
// listener, a close code 4000+status on the others).
func testApp() worker.Handlers {
	return worker.Handlers{OnWebSocketConnect: func(c *worker.Context, r *worker.Request) {
		if s := r.Query.Get("deny"); s != "" {
			n, _ := strconv.Atoi(s)
			if err := c.Reject(n, "denied by the app"); err != nil {
				c.Send([]byte(err.Error()))
			}
		}
	}, OnMessage: func(c *worker.Context, msg []byte) {
		if c.Binary() {
			c.SendBinary(msg)
			return
		}
		s := string(msg)
		switch {
		case strings.HasPrefix(s, "bind "):
			c.BindUID(s[len("bind "):])
			c.Send([]byte("bound " + s[len("bind "):]))
		case strings.HasPrefix(s, "join "):
			c.JoinGroup(s[len("join "):])
			c.Send([]byte("joined " + s[len("join "):]))
		case s == "bad-utf8":
			c.Send(badUTF8)
		case s == "close":
			c.Send([]byte("closing"))
			c.Close()
		default:
			c.Send(msg)
		}
	}}
}

// startNode starts a node running testApp with three WebSocket listeners,
// ws, wsz (permessage-deflate on) and hook (upgrade_hook on), and the
// HTTP API, all on 127.0.0.1;
// it is shut down when the test ends.
func startNode(t *testing.T) *node.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := testApp()
	n, err := node.Start(ctx, node.Config{
		Logger: testLogger(t),
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{
			Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: maxMessage,
		}, {
			Name: "wsz", Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: maxMessage,
			Compression: gateway.Compression{Enabled: true},
		}, {
			Name: "hook", Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: maxMessage, UpgradeHook: true,
		}}},
		HTTP:   node.HTTPConfig{Addr: "127.0.0.1:0"},
		Worker: node.WorkerConfig{Handlers: &h, App: "interop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	return n
}

// testLogger shows the node's warnings with -v and discards them
// otherwise.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// require skips the test when a prerequisite is missing, or fails it
// when the CI environment variable is set: CI must run these tests.
func require(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	msg := what + " is missing: run test/interop/setup.sh"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so this is a failure, not a skip)")
	}
	t.Skip(msg)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// requireNode checks for node and the npm packages in node_modules.
func requireNode(t *testing.T, packages ...string) {
	t.Helper()
	_, err := exec.LookPath("node")
	require(t, err == nil, "node (Node.js 18 or newer)")
	for _, p := range packages {
		require(t, fileExists("node_modules/"+p+"/package.json"), "npm package "+p+" in test/interop/node_modules")
	}
}

// check is one named check of a script's result.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// result is what a script prints after "RESULT ".
type result struct {
	Client string  `json:"client"`
	Checks []check `json:"checks"`
}

// runScript runs a Node script from this directory with env added. The
// script prints "READY" once its clients are set up, which calls onReady,
// and finally "RESULT <json>". Other output goes to the test log.
func runScript(t *testing.T, script string, env []string, onReady func() error) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stderr tailBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var res *result
	ready := false
	for line := range lines {
		switch {
		case line == "READY":
			ready = true
			t.Logf("%s ready after %v", script, time.Since(start).Round(time.Millisecond))
			if err := onReady(); err != nil {
				t.Errorf("on READY: %v", err)
			}
		case strings.HasPrefix(line, "RESULT "):
			res = new(result)
			if err := json.Unmarshal([]byte(line[len("RESULT "):]), res); err != nil {
				t.Errorf("bad RESULT line %q: %v", line, err)
				res = nil
			}
		default:
			t.Logf("%s: %s", script, line)
		}
	}
	err = cmd.Wait()
	t.Logf("%s ran for %v", script, time.Since(start).Round(time.Millisecond))
	if err != nil || res == nil {
		t.Fatalf("%s: exit %v, ready=%v, result=%v; stderr:\n%s", script, err, ready, res != nil, stderr.String())
	}
	if !ready {
		t.Errorf("%s never printed READY", script)
	}
	if s := stderr.String(); s != "" {
		t.Logf("%s stderr:\n%s", script, s)
	}
	return *res
}

// assertChecks fails the test for every failed check and for every name
// in want that the script did not report.
func assertChecks(t *testing.T, res result, want []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range res.Checks {
		seen[c.Name] = true
		if c.OK {
			t.Logf("ok   %s: %s", c.Name, c.Detail)
		} else {
			t.Errorf("FAIL %s (%s): %s", c.Name, res.Client, c.Detail)
		}
	}
	for _, name := range want {
		if !seen[name] {
			t.Errorf("check %q was not reported by the %s script", name, res.Client)
		}
	}
}

// postAPI calls the node's HTTP API and checks for a 200 answer.
func postAPI(ctx context.Context, n *node.Node, method string, params any) error {
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	url := "http://" + n.HTTPAddr().String() + "/api/" + method
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", method, resp.Status, answer)
	}
	return nil
}

// groupSends are the server pushes both scripts wait for once READY:
// "group hello" to group room, the bytes 00 ff 80 to everyone (binary,
// as they are not UTF-8), then "all hello" to everyone.
func groupSends(n *node.Node) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, call := range []struct {
			method string
			params map[string]any
		}{
			{"sendToGroup", map[string]any{"group": "room", "message": "group hello"}},
			{"sendToAll", map[string]any{"message_base64": "AP+A"}},
			{"sendToAll", map[string]any{"message": "all hello"}},
		} {
			if err := postAPI(ctx, n, call.method, call.params); err != nil {
				return err
			}
		}
		return nil
	}
}

// tailBuffer keeps the last 64 KiB written to it; safe for concurrent
// use (exec writes stderr from its own goroutine).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 64<<10; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
