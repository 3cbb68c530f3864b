package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/webhook"
)

// TestStartWebhook: `start --webhook URL` serves the events with the
// backend at URL, in the master (no worker processes although
// worker.processes defaults to the number of CPUs, no app).
func TestStartWebhook(t *testing.T) {
	const secret = "cli-secret"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte(secret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var b webhook.Batch
		_ = json.Unmarshal(body, &b)
		var acts []map[string]any
		for _, ev := range b.Events {
			if ev.Type == "message" && ev.Data != nil {
				acts = append(acts, map[string]any{"type": "send", "data": "hook:" + *ev.Data})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"actions": acts})
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	cmd, err := cli.NewCommand(apps...)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd.SetOut(io.Discard)
	cmd.SetErr(&logs)
	t.Setenv("GATEWORK_PID_FILE", filepath.Join(t.TempDir(), "gatework.pid"))
	t.Setenv("GATEWORK_WORKER_WEBHOOK_SECRET", secret)
	cmd.SetArgs([]string{"start", "--webhook", "http://" + ln.Addr().String() + "/events", "--ws", "127.0.0.1:0",
		"--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json"})
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
	if logLine(logs.String(), map[string]string{"msg": "gatework starting", "app": "webhook"}) == nil ||
		!strings.Contains(logs.String(), `"worker_processes":0`) {
		t.Errorf("not app webhook with no worker processes:\n%s", logs.String())
	}
	ws, _, err := websocket.DefaultDialer.Dial(strings.TrimPrefix(ready["ws"].(string), "websocat "), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "hook:hi" {
		t.Fatalf("answer %q, %v: want hook:hi", got, err)
	}
	_ = ws.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("start: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("start did not return after cancel")
	}
}
