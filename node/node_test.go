package node_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/testwait"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

func TestMain(m *testing.M) {
	// nbio starts a task pool when its package is initialised.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"))
}

// testLogger discards logs unless the test runs with -v, where it shows
// warnings and errors.
func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startNode starts a node with a ws and a tcp listener and an HTTP server,
// all on port 0, running h.
func startNode(t *testing.T, h worker.Handlers, mod func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.Config{
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{
			{Protocol: "ws", Addr: "127.0.0.1:0"},
			{Protocol: "tcp", Addr: "127.0.0.1:0"},
		}},
		HTTP:   node.HTTPConfig{Addr: "127.0.0.1:0"},
		Worker: node.WorkerConfig{Handlers: &h, App: "test"},
		Logger: testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n
}

func dialWS(t *testing.T, n *node.Node) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr("ws").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

func readWS(t *testing.T, ws *websocket.Conn) (int, []byte) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, data
}

func TestEchoWebSocket(t *testing.T) {
	n := startNode(t, echo.Handlers(), nil)
	ws := dialWS(t, n)
	tests := []struct {
		name string
		typ  int
		msg  []byte
	}{
		{"text", websocket.TextMessage, []byte("hello")},
		{"trailing NUL", websocket.TextMessage, []byte("x\x00")},
		{"spaces", websocket.TextMessage, []byte("  padded  ")},
		{"CR LF", websocket.TextMessage, []byte("two\r\nlines\r\n")},
		// An empty message is not tested: the gateway's WebSocket engine
		// (nbio) does not deliver empty data frames.
		{"binary", websocket.BinaryMessage, []byte{0, 1, 2, 0xff, 0xfe, 0}},
		{"binary valid UTF-8", websocket.BinaryMessage, []byte("looks like text\n")},
		{"large", websocket.BinaryMessage, bytes.Repeat([]byte{0, 'a', '\n'}, 100_000)},
	}
	for _, tt := range tests {
		if err := ws.WriteMessage(tt.typ, tt.msg); err != nil {
			t.Fatal(err)
		}
		typ, got := readWS(t, ws)
		if typ != tt.typ || !bytes.Equal(got, tt.msg) {
			t.Errorf("%s: got type %d %q, want type %d %q", tt.name, typ, trunc(got), tt.typ, trunc(tt.msg))
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func TestEchoTCPLines(t *testing.T) {
	n := startNode(t, echo.Handlers(), nil)
	c, err := net.Dial("tcp", n.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lines := []string{"hello", "  spaces  ", "nul\x00inside", "cr at end\r", ""}
	// Write them all in one go: framing must split them.
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range lines {
		got, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if got != want+"\n" {
			t.Errorf("got %q, want %q", got, want+"\n")
		}
	}
}

func TestHealthz(t *testing.T) {
	n := startNode(t, echo.Handlers(), nil)
	base := "http://" + n.HTTPAddr().String()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
}

func TestHTTPAPIToken(t *testing.T) {
	n := startNode(t, echo.Handlers(), func(c *node.Config) { c.HTTP.Token = "s3cret" })
	ws := dialWS(t, n)
	_ = ws
	url := "http://" + n.HTTPAddr().String() + "/api/getClientCount"
	tests := []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer s3cret", http.StatusOK},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("auth %q: status %d (%s), want %d", tt.auth, resp.StatusCode, body, tt.want)
		}
		if tt.want == http.StatusOK && !strings.Contains(string(body), `"result":1`) {
			t.Errorf("getClientCount: %s, want result 1", body)
		}
	}
	// /healthz needs no token.
	resp, err := http.Get("http://" + n.HTTPAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz with a token configured: %d", resp.StatusCode)
	}
}

// TestNoWorkerThenRemote starts a node without an in-process worker whose
// embedded NATS listens, and serves it from a worker connected over TCP,
// as examples/echo does.
func TestNoWorkerThenRemote(t *testing.T) {
	n := startNode(t, worker.Handlers{}, func(c *node.Config) {
		c.Worker.Handlers = nil
		c.NATS.Listen = "127.0.0.1:0"
		c.NATS.User, c.NATS.Password = "w", "pw"
	})
	if n.Worker() != nil {
		t.Fatal("a worker runs with Handlers nil")
	}
	url := n.NATSURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("NATSURL %q", url)
	}
	if _, err := bus.Connect(bus.Options{URL: url}); err == nil {
		t.Fatal("connected to the embedded NATS without credentials")
	}
	nc, err := bus.Connect(bus.Options{URL: url, User: "w", Password: "pw", Name: "remote"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w, err := worker.New(nc, nil, worker.Config{Logger: testLogger(t)}, echo.Handlers())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	ws := dialWS(t, n)
	if err := ws.WriteMessage(websocket.TextMessage, []byte("via tcp bus")); err != nil {
		t.Fatal(err)
	}
	if _, got := readWS(t, ws); string(got) != "via tcp bus" {
		t.Errorf("got %q", got)
	}
	_ = ws.Close()
	// Stop the remote worker while the bus is up, once the close event was
	// handled; the node's Shutdown (cleanup) then stops the embedded NATS.
	waitFor(t, 5*time.Second, func() bool {
		st := n.Gateway().Stats()
		return st.Connections == 0 && st.InFlight == 0 && st.Parked == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Errorf("worker stop: %v", err)
	}
}

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, "the condition", cond)
}

func TestStartFailsCleanly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := echo.Handlers()
	tests := []struct {
		name string
		cfg  node.Config
	}{
		{"no listeners", node.Config{}},
		{"http port taken", node.Config{
			Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}},
			HTTP:    node.HTTPConfig{Addr: ln.Addr().String()},
			Worker:  node.WorkerConfig{Handlers: &h},
		}},
		{"listener port taken", node.Config{
			Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "tcp", Addr: ln.Addr().String()}}},
		}},
		{"external NATS unreachable", node.Config{
			Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}},
			NATS:    node.NATSConfig{URL: "nats://" + ln.Addr().String(), InsecureNoAuth: true},
		}},
	}
	for _, tt := range tests {
		tt.cfg.Logger = testLogger(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err := node.Start(ctx, tt.cfg)
		cancel()
		if err == nil {
			_ = n.Shutdown(context.Background())
			t.Errorf("%s: started", tt.name)
		}
	}
}
