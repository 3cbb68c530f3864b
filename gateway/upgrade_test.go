package gateway_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/testwait"
	"github.com/gatework/gatework/worker"
)

// hookWorker is a bare bus worker for the upgrade hook tests. For an
// EVENT_WEBSOCKET_CONNECT it acts on the request's query: reject=<code>
// (with body=<text>) rejects, hang leaves the batch unanswered, uid=<uid>
// binds; it always sends "welcome". Messages are echoed. It records the
// events it saw, in order, as "type" or "type:before" / "connect:<uid>".
type hookWorker struct {
	mu     sync.Mutex
	events []string
}

func (w *hookWorker) seen() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.events...)
}

func (w *hookWorker) serve(t *testing.T, nc *nats.Conn) {
	t.Helper()
	subj, _ := bus.NewSubjects("")
	sub, err := nc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var b bus.EventBatch
		if err := bus.DecodeEventBatch(m.Data, &b); err != nil {
			t.Error(err)
			return
		}
		ack := bus.Ack{Delivery: b.Delivery}
		for _, ev := range b.Events {
			name := ev.Type.String()
			switch ev.Type {
			case bus.EventWebSocketConnect:
				if ev.BeforeUpgrade {
					name += ":before"
				}
				q, _ := url.ParseQuery(ev.Request.Query)
				if q.Has("hang") {
					w.record(name)
					return
				}
				if q.Has("nack") {
					w.record(name)
					_ = m.Respond(bus.AppendAck(nil, &bus.Ack{Delivery: b.Delivery, Nack: true, Attempt: b.Attempt, Error: "no"}))
					return
				}
				if code := q.Get("reject"); code != "" {
					n, _ := strconv.Atoi(code)
					ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionReject, Code: uint32(n), Arg: q.Get("body")})
				}
				if uid := q.Get("uid"); uid != "" {
					ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionBindUID, Arg: uid})
				}
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: []byte("welcome")})
			case bus.EventConnect:
				name += ":" + b.State.UID
			case bus.EventMessage:
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: ev.Data})
			}
			w.record(name)
		}
		_ = m.Respond(bus.AppendAck(nil, &ack))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

func (w *hookWorker) record(name string) {
	w.mu.Lock()
	w.events = append(w.events, name)
	w.mu.Unlock()
}

// startHook starts a gateway whose ws listener has the upgrade hook, with
// the hook worker when w is not nil.
func startHook(t *testing.T, w *hookWorker, l gateway.ListenerConfig) *gateway.Server {
	t.Helper()
	nc := gateway.StartTestBus(t)
	if w != nil {
		w.serve(t, nc)
	}
	return startHookOn(t, nc, gateway.Config{}, l)
}

// startHookOn starts a gateway on nc with cfg and one ws listener l with
// the upgrade hook.
func startHookOn(t *testing.T, nc *nats.Conn, cfg gateway.Config, l gateway.ListenerConfig) *gateway.Server {
	t.Helper()
	l.Protocol, l.Addr, l.UpgradeHook = "ws", "127.0.0.1:0", true
	cfg.Listeners, cfg.Logger = []gateway.ListenerConfig{l}, slog.New(slog.DiscardHandler)
	gw, err := gateway.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(t.Context()) })
	return gw
}

// upgradeRequest is a valid upgrade request for target.
func upgradeRequest(target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// rawUpgrade sends an upgrade request for target (and extra bytes) on a
// new socket and returns the socket and a reader of the answer.
func rawUpgrade(t *testing.T, gw *gateway.Server, target, extra string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", gw.Addr("ws").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Write([]byte(upgradeRequest(target) + extra)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readResponse reads an HTTP response and its whole body.
func readResponse(t *testing.T, r *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no HTTP answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestUpgradeHookAccept: with upgrade_hook the upgrade waits for
// OnWebSocketConnect (marked before the upgrade); an answer without a
// reject accepts: the 101, then the handler's message, its bind applied
// before the connect event, which comes after, and before the client's
// first message even when the client sends it with the 101 in hand: the
// 101 is written off the client's event loop, so the gateway is slowed
// there (a delay between writing it and queuing the connect event) and a
// message read meanwhile must not overtake.
func TestUpgradeHookAccept(t *testing.T) {
	for _, tc := range []struct {
		name   string
		atOnce bool // send with the 101, the connect event queued 200ms late
	}{
		{"message after the welcome", false},
		{"message at once", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.atOnce {
				gateway.SetRegisterDelay(t, 200*time.Millisecond)
			}
			w := &hookWorker{}
			gw := startHook(t, w, gateway.ListenerConfig{})
			ws, resp, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr("ws").String()+"/?uid=alice", nil)
			if err != nil {
				t.Fatalf("upgrade: %v (%+v)", err, resp)
			}
			defer ws.Close()
			if tc.atOnce {
				if err := ws.WriteMessage(websocket.TextMessage, []byte("echo me")); err != nil {
					t.Fatal(err)
				}
			}
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			for _, want := range []string{"welcome", "echo me"} {
				_, got, err := ws.ReadMessage()
				if err != nil || string(got) != want {
					t.Fatalf("got %q, %v; want %q", got, err, want)
				}
				if want == "welcome" && !tc.atOnce {
					_ = ws.WriteMessage(websocket.TextMessage, []byte("echo me"))
				}
			}
			want := []string{"websocket_connect:before", "connect:alice", "message"}
			if got := w.seen(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("worker saw %v, want %v", got, want)
			}
			if n := gw.Stats().Connections; n != 1 {
				t.Fatalf("Connections = %d, want 1", n)
			}
		})
	}
}

// TestUpgradeHookRefusals: a reject answers its HTTP status and body (a
// status outside 400-599 answers 403), a request followed by data before
// the 101 gets 400; none of them reaches OnConnect or the hub, and each is
// counted.
func TestUpgradeHookRefusals(t *testing.T) {
	w := &hookWorker{}
	gw := startHook(t, w, gateway.ListenerConfig{})
	for _, tc := range []struct {
		name, target, extra string
		status              int
		body                string
		counter             string
	}{
		{"forbidden", "/?reject=403&body=go+away", "", 403, "go away", "upgrade_rejected"},
		{"unauthorized", "/?reject=401&body=token", "", 401, "token", "upgrade_rejected"},
		{"service unavailable", "/?reject=599", "", 599, "", "upgrade_rejected"},
		{"status 200 out of range", "/?reject=200&body=x", "", 403, "x", "upgrade_rejected"},
		{"status 4403 out of range", "/?reject=4403", "", 403, "", "upgrade_rejected"},
		{"data before the 101", "/", "\x81\x80abcd", 400, "data before the upgrade response", "bad_handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := gw.Stats().Refused[tc.counter]
			_, r := rawUpgrade(t, gw, tc.target, tc.extra)
			resp, body := readResponse(t, r)
			if resp.StatusCode != tc.status || body != tc.body {
				t.Fatalf("answer %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if _, err := r.ReadByte(); err != io.EOF {
				t.Fatalf("after the answer: %v, want EOF", err)
			}
			if got := gw.Stats().Refused[tc.counter]; got != before+1 {
				t.Fatalf("Refused[%s] = %d, want %d", tc.counter, got, before+1)
			}
		})
	}
	for _, ev := range w.seen() {
		if strings.HasPrefix(ev, "connect") {
			t.Fatalf("a refused client reached OnConnect: %v", w.seen())
		}
	}
	if n := gw.Stats().Connections; n != 0 {
		t.Fatalf("Connections = %d, want 0", n)
	}
}

// TestUpgradeHookTimeout: with no worker to answer (the batch is parked)
// or one that does not answer, the upgrade gets 503 after upgrade_timeout,
// counted; nothing stays in flight or parked.
func TestUpgradeHookTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		worker *hookWorker
	}{
		{"no worker", nil},
		{"worker does not answer", &hookWorker{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := startHook(t, tc.worker, gateway.ListenerConfig{UpgradeTimeout: 200 * time.Millisecond})
			start := time.Now()
			_, r := rawUpgrade(t, gw, "/?hang", "")
			resp, _ := readResponse(t, r)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503", resp.StatusCode)
			}
			if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
				t.Fatalf("answered after %v, want about 200ms", d)
			}
			testwait.For(t, 5*time.Second, "the batch off the in-flight table", func() bool {
				st := gw.Stats()
				return st.InFlight == 0 && st.Parked == 0
			})
			if got := gw.Stats().Refused["upgrade_timeout"]; got != 1 {
				t.Fatalf("Refused[upgrade_timeout] = %d, want 1", got)
			}
		})
	}
}

// TestUpgradeHookDeadLetter: a batch given up (nacked at its last
// delivery) is an upgrade nobody answered: 503 at once, not after
// upgrade_timeout.
func TestUpgradeHookDeadLetter(t *testing.T) {
	nc := gateway.StartTestBus(t)
	(&hookWorker{}).serve(t, nc)
	gw := startHookOn(t, nc, gateway.Config{MaxDeliveries: 1}, gateway.ListenerConfig{UpgradeTimeout: 30 * time.Second})
	start := time.Now()
	_, r := rawUpgrade(t, gw, "/?nack", "")
	if resp, _ := readResponse(t, r); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answered after %v: the dead letter did not settle the upgrade", d)
	}
	st := gw.Stats()
	if st.Refused["upgrade_timeout"] != 1 || st.Connections != 0 || st.InFlight != 0 {
		t.Fatalf("refused %v, connections %d, in flight %d; want upgrade_timeout 1, 0, 0", st.Refused, st.Connections, st.InFlight)
	}
}

// TestUpgradeHookGoWorker: the Go worker before the upgrade. Actions that
// a handler's API call flushes early (a progress ack) are kept and applied
// on accept, with the final ack's; OnConnect runs after, seeing them; a
// reject answers 403 with its body.
func TestUpgradeHookGoWorker(t *testing.T) {
	nc := gateway.StartTestBus(t)
	cl, err := api.New(nc, api.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	w, err := worker.New(nc, cl, worker.Config{Logger: slog.New(slog.DiscardHandler)}, worker.Handlers{
		OnWebSocketConnect: func(c *worker.Context, r *worker.Request) {
			if !c.BeforeUpgrade() {
				c.Send([]byte("not before the upgrade"))
				return
			}
			if r.Query.Has("deny") {
				if err := c.Reject(200, "out of range"); err == nil {
					c.Send([]byte("Reject(200) gave no error"))
				}
				_ = c.Reject(403, "denied")
				return
			}
			c.BindUID(r.Query.Get("uid"))
			c.Send([]byte("early"))
			// An API call: the actions so far go first, in a progress ack.
			if _, err := c.API().IsUIDOnline(context.Background(), "nobody"); err != nil {
				c.Send([]byte(err.Error()))
			}
			c.JoinGroup("late")
		},
		OnConnect: func(c *worker.Context) {
			c.Send([]byte("connected " + c.UID() + " " + strings.Join(c.Groups(), ",")))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	gw := startHookOn(t, nc, gateway.Config{}, gateway.ListenerConfig{})
	url := "ws://" + gw.Addr("ws").String()
	_, resp, err := websocket.DefaultDialer.Dial(url+"/?deny", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied upgrade: %v, %+v; want HTTP 403", err, resp)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "denied" {
		t.Fatalf("403 body %q, want denied", body)
	}
	ws, _, err := websocket.DefaultDialer.Dial(url+"/?uid=dora", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"early", "connected dora late"} {
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
}

// TestUpgradeHookBound: at upgrade_max_pending upgrades waiting, one more
// gets 503 at once (counted); a waiting client that leaves frees its
// place.
func TestUpgradeHookBound(t *testing.T) {
	w := &hookWorker{}
	gw := startHook(t, w, gateway.ListenerConfig{UpgradeMaxPending: 2, UpgradeTimeout: 30 * time.Second})
	var waiting []net.Conn
	for range 2 {
		c, _ := rawUpgrade(t, gw, "/?hang", "")
		waiting = append(waiting, c)
	}
	testwait.For(t, 5*time.Second, "two upgrades waiting", func() bool { return len(w.seen()) == 2 })
	_, r := rawUpgrade(t, gw, "/?uid=bob", "")
	if resp, _ := readResponse(t, r); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third upgrade: %d, want 503", resp.StatusCode)
	}
	if got := gw.Stats().Refused["upgrade_busy"]; got != 1 {
		t.Fatalf("Refused[upgrade_busy] = %d, want 1", got)
	}
	_ = waiting[0].Close()
	testwait.For(t, 5*time.Second, "a place freed", func() bool {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr("ws").String()+"/?uid=carol", nil)
		if err != nil {
			return false
		}
		_ = ws.Close()
		return true
	})
	// The abandoned batch left; carol's come and go: only the upgrade
	// still waiting stays in flight.
	testwait.For(t, 5*time.Second, "only the waiting upgrade in flight", func() bool { return gw.Stats().InFlight == 1 })
}
