package node_test

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/node"
)

// statsAnswer is the body of POST /api/getStats.
type statsAnswer struct {
	Result  api.Stats `json:"result"`
	Partial bool      `json:"partial"`
	Missing []string  `json:"missing"`
}

func getStats(t *testing.T, n *node.Node) statsAnswer {
	t.Helper()
	code, body := httpDo(t, n, http.MethodPost, "/api/getStats", "", "{}")
	if code != http.StatusOK {
		t.Fatalf("getStats: %d %s", code, body)
	}
	var a statsAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("getStats: %v: %s", err, body)
	}
	return a
}

// echoRound sends msg on ws and reads the echo.
func echoRound(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, got := readWS(t, ws); string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// TestGetStatsCluster starts a gateway with an in-process worker, a second
// gateway without one and an API-only node on the same bus, and checks
// that the API node's getStats (what the console polls) reports both
// gateways with their processes and counters, the worker with its
// process, and the sums; and that the counters grow with traffic.
func TestGetStatsCluster(t *testing.T) {
	const user, pass = "stats", "stats-pw"
	full := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.Listen, c.NATS.User, c.NATS.Password = "127.0.0.1:0", user, pass
	})
	url := full.NATSURL()
	second := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.URL, c.HTTP.HealthOnly, c.Worker.Handlers = url, true, nil
		c.NATS.User, c.NATS.Password = user, pass
	})
	apiOnly := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.URL, c.NoGateway, c.Worker.Handlers = url, true, nil
		c.NATS.User, c.NATS.Password = user, pass
	})
	// The API node learns of the gateways from their heartbeats.
	waitFor(t, 5*time.Second, func() bool { return getStats(t, apiOnly).Result.Totals.Gateways == 2 })
	before := getStats(t, apiOnly)

	clients := []*websocket.Conn{dialWS(t, full), dialWS(t, second), dialWS(t, second)}
	for i, ws := range clients {
		echoRound(t, ws, "hello "+strconv.Itoa(i))
	}
	a := getStats(t, apiOnly)
	st := a.Result
	if a.Partial || len(a.Missing) != 0 {
		t.Errorf("partial %v, missing %v", a.Partial, a.Missing)
	}
	if st.Totals.Gateways != 2 || len(st.Gateways) != 2 {
		t.Fatalf("gateways: totals %d, listed %d", st.Totals.Gateways, len(st.Gateways))
	}
	if st.Totals.Connections != 3 {
		t.Errorf("connections %d, want 3", st.Totals.Connections)
	}
	if d := st.Totals.MessagesIn - before.Result.Totals.MessagesIn; d != 3 {
		t.Errorf("messages_in grew by %d, want 3", d)
	}
	if d := st.Totals.MessagesOut - before.Result.Totals.MessagesOut; d < 3 {
		t.Errorf("messages_out grew by %d, want at least 3", d)
	}
	if st.Totals.BytesIn <= before.Result.Totals.BytesIn || st.Totals.EventsSent <= before.Result.Totals.EventsSent {
		t.Errorf("bytes_in %d→%d, events_sent %d→%d: did not grow", before.Result.Totals.BytesIn, st.Totals.BytesIn,
			before.Result.Totals.EventsSent, st.Totals.EventsSent)
	}
	now := time.Now().UnixMilli()
	ids := map[string]int{full.Gateway().ID(): 1, second.Gateway().ID(): 2}
	for _, g := range st.Gateways {
		want, ok := ids[g.Gateway]
		if !ok {
			t.Errorf("unknown gateway %q", g.Gateway)
			continue
		}
		if g.Connections != want {
			t.Errorf("gateway %s: %d connections, want %d", g.Gateway, g.Connections, want)
		}
		if g.PID != os.Getpid() || g.RSSBytes <= 0 || g.Bus != "CONNECTED" {
			t.Errorf("gateway %s: pid %d, rss %d, bus %q", g.Gateway, g.PID, g.RSSBytes, g.Bus)
		}
		if g.StartedUnixMs <= 0 || g.StartedUnixMs > g.NowUnixMs || g.NowUnixMs > now {
			t.Errorf("gateway %s: started %d, now %d (test's now %d)", g.Gateway, g.StartedUnixMs, g.NowUnixMs, now)
		}
	}
	// One worker (full's in-process one) handled every client's events,
	// with its process known.
	wid := full.Worker().ID()
	if len(st.Workers) != 1 || st.Totals.Workers != 1 {
		t.Fatalf("workers %+v, want only %s", st.Workers, wid)
	}
	w := st.Workers[0]
	if w.ID != wid || w.PID != os.Getpid() || w.Bus != "CONNECTED" || w.StartedUnixMs <= 0 || w.RSSBytes <= 0 {
		t.Errorf("worker %+v", w)
	}
	if w.Events < 6 || w.Handled < 6 { // a connect and a message per client
		t.Errorf("worker events %d, handled %d; want at least 6", w.Events, w.Handled)
	}
}

// TestConsoleRoutes checks where the web console and the chat page are
// served: the console on a node with the API (also API-only), never on a
// health-only one; the chat page only when asked for and a WebSocket
// listener exists, pointing at that listener's port.
func TestConsoleRoutes(t *testing.T) {
	const user, pass = "console", "console-pw"
	full := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.Listen, c.NATS.User, c.NATS.Password = "127.0.0.1:0", user, pass
		c.HTTP.ChatPage = true
	})
	url := full.NATSURL()
	apiOnly := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.URL, c.NoGateway, c.Worker.Handlers = url, true, nil
		c.NATS.User, c.NATS.Password = user, pass
		c.HTTP.ChatPage = true // no listener: no page
	})
	healthOnly := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.URL, c.HTTP.HealthOnly, c.Worker.Handlers = url, true, nil
		c.NATS.User, c.NATS.Password = user, pass
	})
	wsPort := strconv.Itoa(full.Addr("ws").(*net.TCPAddr).Port)
	for _, tc := range []struct {
		name string
		n    *node.Node
		path string
		want int
		body string
	}{
		{"full", full, "/", 200, "gatework console"},
		{"full", full, "/console/console.js", 200, "getStats"},
		{"full", full, "/chat", 200, `content="` + wsPort + `"`},
		{"full", full, "/nothing", 404, ""},
		{"api-only", apiOnly, "/", 200, "gatework console"},
		{"api-only", apiOnly, "/chat", 404, ""},
		{"health-only", healthOnly, "/", 404, ""},
	} {
		code, body := httpDo(t, tc.n, http.MethodGet, tc.path, "", "")
		if code != tc.want || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s GET %s: %d (want %d), body has %q: %v", tc.name, tc.path, code, tc.want, tc.body,
				strings.Contains(string(body), tc.body))
		}
	}
}
