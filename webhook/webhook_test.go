package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/testwait"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/webhook"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

const secret = "test-secret"

// backend is a webhook backend on a real socket: it checks every
// request's signature and answers with fn's body (and status).
type backend struct {
	t       *testing.T
	srv     *http.Server
	url     string
	fn      func(b webhook.Batch) (int, string)
	mu      sync.Mutex
	batches []webhook.Batch
	badSigs atomic.Int32
	active  atomic.Int32
	maxSeen atomic.Int32
}

func startBackend(t *testing.T, ln net.Listener, fn func(b webhook.Batch) (int, string)) *backend {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	b := &backend{t: t, url: "http://" + ln.Addr().String() + "/events", fn: fn}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	n := b.active.Add(1)
	defer b.active.Add(-1)
	for {
		m := b.maxSeen.Load()
		if n <= m || b.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	body, _ := io.ReadAll(r.Body)
	if err := webhook.Verify([]byte(secret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), 0); err != nil {
		b.badSigs.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var batch webhook.Batch
	if err := json.Unmarshal(body, &batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(batch.Events) == 0 { // the probe
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b.mu.Lock()
	b.batches = append(b.batches, batch)
	b.mu.Unlock()
	status, answer := b.fn(batch)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

func (b *backend) seen() []webhook.Batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]webhook.Batch(nil), b.batches...)
}

// echoAnswer echoes every message, text as text and binary as binary.
func echoAnswer(b webhook.Batch) (int, string) {
	var acts []map[string]any
	for _, ev := range b.Events {
		if ev.Type != "message" {
			continue
		}
		a := map[string]any{"type": "send", "binary": ev.Binary}
		if ev.Data != nil {
			a["data"] = *ev.Data
		} else {
			a["data_base64"] = *ev.DataBase64
		}
		acts = append(acts, a)
	}
	out, _ := json.Marshal(map[string]any{"actions": acts})
	return http.StatusOK, string(out)
}

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

// startNode starts a node with a WebSocket listener whose events go to url.
func startNode(t *testing.T, url string, mod func(*webhook.Config)) *node.Node {
	t.Helper()
	wh := webhook.Config{URL: url, Secret: secret, Backoff: 10 * time.Millisecond, ProgressInterval: 200 * time.Millisecond}
	if mod != nil {
		mod(&wh)
	}
	n, err := node.Start(t.Context(), node.Config{
		Gateway: gateway.Config{
			Listeners:    []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}},
			EventTimeout: 600 * time.Millisecond,
		},
		Webhook: wh,
		Logger:  testLogger(t),
	})
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

func dial(t *testing.T, n *node.Node, path string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr("ws").String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

func read(t *testing.T, ws *websocket.Conn, within time.Duration) (int, []byte) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(within))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, data
}

func write(t *testing.T, ws *websocket.Conn, typ int, msg []byte) {
	t.Helper()
	if err := ws.WriteMessage(typ, msg); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

func TestEchoByteExact(t *testing.T) {
	be := startBackend(t, nil, echoAnswer)
	n := startNode(t, be.url, nil)
	ws := dial(t, n, "/")
	tests := []struct {
		name string
		typ  int
		msg  []byte
	}{
		{"text", websocket.TextMessage, []byte("hello")},
		{"unicode and NUL", websocket.TextMessage, []byte("é😀\x00\r\n")},
		{"binary", websocket.BinaryMessage, []byte{0, 1, 0xff, 0xfe}},
		{"binary valid UTF-8", websocket.BinaryMessage, []byte("text-like")},
		{"large", websocket.BinaryMessage, bytes.Repeat([]byte{0, 'a', 0xc3}, 50_000)},
	}
	for _, tt := range tests {
		write(t, ws, tt.typ, tt.msg)
		typ, got := read(t, ws, 5*time.Second)
		if typ != tt.typ || !bytes.Equal(got, tt.msg) {
			t.Errorf("%s: got type %d (%d bytes), want type %d (%d bytes)", tt.name, typ, len(got), tt.typ, len(tt.msg))
		}
	}
	if be.badSigs.Load() != 0 {
		t.Errorf("%d requests with a bad signature", be.badSigs.Load())
	}
}

// TestEventsAndActions: the connect, websocket_connect, message and close
// events carry the bus events' fields, and every action of an answer is
// applied in order (seen by the client and by the next batch's state).
func TestEventsAndActions(t *testing.T) {
	be := startBackend(t, nil, func(b webhook.Batch) (int, string) {
		var acts []string
		for _, ev := range b.Events {
			switch ev.Type {
			case "connect":
				acts = append(acts, `{"type":"bind","uid":"u1"}`, `{"type":"join","group":"room"}`,
					`{"type":"join","group":"tmp"}`, `{"type":"leave","group":"tmp"}`,
					`{"type":"session_set","session":{"a":1}}`, `{"type":"session_update","session":{"b":2}}`)
			case "message":
				state, _ := json.Marshal(map[string]any{"uid": b.State.UID, "groups": b.State.Groups, "session": b.State.Session})
				acts = append(acts, `{"type":"send","data":`+string(mustJSON(string(state)))+`}`)
				if *ev.Data == "bye" {
					acts = append(acts, `{"type":"session_delete"}`, `{"type":"close","data":"final"}`)
				}
			}
		}
		return http.StatusOK, `{"actions":[` + strings.Join(acts, ",") + `]}`
	})
	n := startNode(t, be.url, nil)
	ws := dial(t, n, "/chat?room=1")
	write(t, ws, websocket.TextMessage, []byte("hi"))
	_, got := read(t, ws, 5*time.Second)
	if want := `{"groups":["room"],"session":{"a":1,"b":2},"uid":"u1"}`; string(got) != want {
		t.Fatalf("state seen by the next batch: %s, want %s", got, want)
	}
	write(t, ws, websocket.TextMessage, []byte("bye"))
	if _, got = read(t, ws, 5*time.Second); !strings.Contains(string(got), `"uid":"u1"`) {
		t.Fatalf("got %s", got)
	}
	if _, got = read(t, ws, 5*time.Second); string(got) != "final" {
		t.Fatalf("final message %q, want final", got)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after close action: %v, want a normal close", err)
	}
	var closeEv *webhook.Event
	var closeState webhook.State
	waitFor(t, 5*time.Second, "the close event", func() bool {
		for _, b := range be.seen() {
			for i := range b.Events {
				if b.Events[i].Type == "close" {
					closeEv, closeState = &b.Events[i], b.State
				}
			}
		}
		return closeEv != nil
	})
	if closeEv.CloseReason != "close_requested" {
		t.Errorf("close reason %q, want close_requested", closeEv.CloseReason)
	}
	if closeState.UID != "u1" || len(closeState.Groups) != 1 || string(closeState.Session) != "null" {
		t.Errorf("close state uid %q groups %v session %s: want u1 [room] null", closeState.UID, closeState.Groups, closeState.Session)
	}
	var req *webhook.Request
	for _, b := range be.seen() {
		for _, ev := range b.Events {
			if ev.Type == "websocket_connect" {
				req = ev.Request
			}
		}
	}
	if req == nil || req.Path != "/chat" || req.Query != "room=1" || req.Method != "GET" || len(req.Headers) == 0 {
		t.Fatalf("websocket_connect request %+v", req)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestOrderAndParallelism: each client's messages reach the backend and
// come back in order although the backend answers in random time, and
// batches of different clients are POSTed in parallel, never more than
// max_in_flight at once.
func TestOrderAndParallelism(t *testing.T) {
	var calls atomic.Int64
	be := startBackend(t, nil, func(b webhook.Batch) (int, string) {
		time.Sleep(time.Duration(calls.Add(1)%7) * time.Millisecond)
		return echoAnswer(b)
	})
	const clients, msgs, inFlight = 6, 30, 3
	n := startNode(t, be.url, func(c *webhook.Config) { c.MaxInFlight = inFlight })
	var wg sync.WaitGroup
	for c := range clients {
		ws := dial(t, n, "/")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range msgs {
				if err := ws.WriteMessage(websocket.TextMessage, []byte{byte('a' + c), byte(i)}); err != nil {
					t.Error(err)
					return
				}
			}
			for i := range msgs {
				_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, got, err := ws.ReadMessage()
				if err != nil {
					t.Error(err)
					return
				}
				if want := []byte{byte('a' + c), byte(i)}; !bytes.Equal(got, want) {
					t.Errorf("client %d message %d: got %q, want %q", c, i, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if m := be.maxSeen.Load(); m < 2 || m > inFlight {
		t.Errorf("at most %d POSTs at once, want 2..%d", m, inFlight)
	}
}

// TestRetry: 5xx answers are retried with back-off; the batch is
// answered once and applied once.
func TestRetry(t *testing.T) {
	var fails atomic.Int32
	be := startBackend(t, nil, func(b webhook.Batch) (int, string) {
		if fails.Add(1) <= 2 {
			return http.StatusServiceUnavailable, "busy"
		}
		return echoAnswer(b)
	})
	n := startNode(t, be.url, nil)
	ws := dial(t, n, "/")
	write(t, ws, websocket.TextMessage, []byte("again"))
	if _, got := read(t, ws, 5*time.Second); string(got) != "again" {
		t.Fatalf("got %q", got)
	}
	st := n.Webhook().Stats()
	if st.Retries < 2 || st.HTTPErrors < 2 || st.Failed != 0 {
		t.Fatalf("stats %+v: want >= 2 retries and http errors, no failure", st)
	}
}

// TestBadAnswer: an answer that is not JSON, names an unknown action or
// is too large fails the whole batch (none of its actions is applied,
// also not those before the bad one); the gateway redelivers it and the
// next, good answer is applied once.
func TestBadAnswer(t *testing.T) {
	tests := []struct {
		name, answer string
	}{
		{"not JSON", `<html>oops</html>`},
		{"unknown action", `{"actions":[{"type":"send","data":"partial"},{"type":"explode"}]}`},
		{"session not an object", `{"actions":[{"type":"send","data":"partial"},{"type":"session_set","session":[1]}]}`},
		{"too large", `{"actions":[{"type":"send","data":"partial` + strings.Repeat("x", 2000) + `"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := startBackend(t, nil, func(b webhook.Batch) (int, string) {
				if b.Events[len(b.Events)-1].Type == "message" && b.Attempt == 1 {
					return http.StatusOK, tt.answer
				}
				return echoAnswer(b)
			})
			n := startNode(t, be.url, func(c *webhook.Config) { c.MaxResponseBytes = 1000 })
			ws := dial(t, n, "/")
			write(t, ws, websocket.TextMessage, []byte("m1"))
			if _, got := read(t, ws, 5*time.Second); string(got) != "m1" {
				t.Fatalf("got %q, want m1 only (no partial answer)", got)
			}
			st := n.Webhook().Stats()
			if st.BadAnswers != 1 || st.Failed != 1 || st.Retries != 0 {
				t.Fatalf("stats %+v: want 1 bad answer, 1 failed, no retry", st)
			}
		})
	}
}

// TestBackendDownAtStart: the node starts although the URL does not
// answer; the client's events are held and served once the backend is up.
func TestBackendDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	n := startNode(t, "http://"+addr+"/events", func(c *webhook.Config) { c.Timeout = 300 * time.Millisecond })
	ws := dial(t, n, "/")
	write(t, ws, websocket.TextMessage, []byte("held"))
	time.Sleep(300 * time.Millisecond)
	if st := n.Webhook().Stats(); st.Batches != 0 || st.Pauses != 1 {
		t.Fatalf("stats %+v while the backend is down: want no batch taken, 1 pause", st)
	}
	if ln, err = net.Listen("tcp", addr); err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	startBackend(t, ln, echoAnswer)
	if _, got := read(t, ws, 10*time.Second); string(got) != "held" {
		t.Fatalf("got %q", got)
	}
	// Stop the node while the backend still answers its close events.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTimeoutRetried: answers slower than the timeout are retried, then
// the batch is left to the gateway's redelivery; it is applied once, from
// the answer in time, and a slow backend does not make the hook leave the
// queue group (a missing one does: TestBackendDownAtStart).
func TestTimeoutRetried(t *testing.T) {
	var calls atomic.Int32
	be := startBackend(t, nil, func(b webhook.Batch) (int, string) {
		if calls.Add(1) <= 2 {
			time.Sleep(600 * time.Millisecond)
		}
		return echoAnswer(b)
	})
	n := startNode(t, be.url, func(c *webhook.Config) { c.Timeout = 300 * time.Millisecond; c.Retries = 1 })
	ws := dial(t, n, "/")
	write(t, ws, websocket.TextMessage, []byte("late"))
	if _, got := read(t, ws, 5*time.Second); string(got) != "late" {
		t.Fatalf("got %q", got)
	}
	_ = ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, got, err := ws.ReadMessage(); err == nil {
		t.Fatalf("a second answer %q: the timed-out POST was applied too", got)
	}
	if st := n.Webhook().Stats(); st.Retries != 1 || st.Unreachable != 2 || st.Failed != 1 || st.Pauses != 0 {
		t.Fatalf("stats %+v: want 1 retry, 2 timeouts, 1 failed batch and no pause", st)
	}
}
