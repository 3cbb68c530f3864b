package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/node"
)

const (
	adminTok  = "adm-1234567890"
	readTok   = "rd-1234567890"
	scrapeTok = "prom-1234567890"
)

// httpDo sends one request to the node's HTTP server and returns the
// status and body.
func httpDo(t *testing.T, n *node.Node, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.HTTPAddr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// scrape reads /metrics and parses it.
func scrape(t *testing.T, n *node.Node, token string) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := httpDo(t, n, http.MethodGet, "/metrics", token, "")
	if status != http.StatusOK {
		t.Fatalf("scrape: %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	return fams
}

// metricValue returns the value of family name's series whose labels
// include want ("k=v" pairs), and whether there is one. A histogram's
// value is its sample count.
func metricValue(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsScrape drives real traffic through a node (WebSocket and TCP
// clients, echoes, an API broadcast, closes by the client and by the API,
// refused API calls) and checks every metric family in a scrape.
func TestMetricsScrape(t *testing.T) {
	n := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.HTTP.Tokens = []httpapi.Token{
			{Name: "ops", Token: adminTok, Scope: httpapi.ScopeAdmin},
			{Name: "dash", Token: readTok, Scope: httpapi.ScopeRead},
			{Name: "prom", Token: scrapeTok, Scope: httpapi.ScopeMetrics},
		}
	})
	var wss []*websocket.Conn
	for range 3 {
		wss = append(wss, dialWS(t, n))
	}
	tcp, err := net.Dial("tcp", n.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	const perClient = 5
	for i, ws := range wss {
		for j := range perClient {
			msg := fmt.Sprintf("hello %d/%d", i, j)
			if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			if _, got := readWS(t, ws); string(got) != msg {
				t.Fatalf("echo %q, want %q", got, msg)
			}
		}
	}
	waitFor(t, 5*time.Second, func() bool { return n.Gateway().Stats().Connections == 4 })

	// API: a broadcast, a refused one (scope), a wrong token, no token.
	if st, b := httpDo(t, n, http.MethodPost, "/api/sendToAll", adminTok, `{"message":"all"}`); st != 200 {
		t.Fatalf("sendToAll: %d %s", st, b)
	}
	for _, ws := range wss {
		if _, got := readWS(t, ws); string(got) != "all" {
			t.Fatalf("broadcast: %q", got)
		}
	}
	if st, _ := httpDo(t, n, http.MethodPost, "/api/sendToAll", readTok, `{"message":"x"}`); st != http.StatusForbidden {
		t.Errorf("read token on sendToAll: %d, want 403", st)
	}
	if st, _ := httpDo(t, n, http.MethodPost, "/api/getClientCount", "wrong-token", `{}`); st != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", st)
	}
	if st, _ := httpDo(t, n, http.MethodGet, "/metrics", "", ""); st != http.StatusUnauthorized {
		t.Errorf("metrics without a token: %d, want 401", st)
	}
	if st, _ := httpDo(t, n, http.MethodPost, "/api/getClientCount", scrapeTok, `{}`); st != http.StatusForbidden {
		t.Errorf("metrics token on the API: %d, want 403", st)
	}

	// Closes: one by the client, one by the API.
	_ = wss[0].Close()
	waitFor(t, 5*time.Second, func() bool { return n.Gateway().Stats().Connections == 3 })
	st, body := httpDo(t, n, http.MethodPost, "/api/getClientList", readTok, `{}`)
	var page struct {
		Result struct{ Items []string } `json:"result"`
	}
	if st != 200 || json.Unmarshal(body, &page) != nil || len(page.Result.Items) == 0 {
		t.Fatalf("getClientList: %d %s", st, body)
	}
	victim := page.Result.Items[0]
	if st, b := httpDo(t, n, http.MethodPost, "/api/closeClient", adminTok, `{"client":"`+victim+`"}`); st != 200 {
		t.Fatalf("closeClient: %d %s", st, b)
	}
	// Every close event handled: connections settled, nothing in flight.
	waitFor(t, 5*time.Second, func() bool {
		s := n.Gateway().Stats()
		return s.Connections == 2 && s.InFlight == 0 && s.Parked == 0
	})

	fams := scrape(t, n, scrapeTok)
	wsOpen, _ := metricValue(fams, "gatework_gateway_connections", "listener=ws")
	tcpOpen, _ := metricValue(fams, "gatework_gateway_connections", "listener=tcp")
	if wsOpen+tcpOpen != 2 || tcpOpen != 1 {
		t.Errorf("connections ws=%v tcp=%v, want 2 in all, tcp 1", wsOpen, tcpOpen)
	}
	worker := "worker=" + n.Worker().ID()
	// 3 ws + 1 tcp connects, 15 messages. The echo worker has neither
	// OnWebSocketConnect nor OnClose: once the gateway heard its
	// announcement it leaves those events out (gateway/closeevents.go).
	minEvents := float64(4 + 3*perClient)
	atLeast := []struct {
		name   string
		labels []string
		min    float64
	}{
		{"gatework_gateway_info", nil, 1},
		{"gatework_gateway_accepted_total", []string{"listener=ws"}, 3},
		{"gatework_gateway_accepted_total", []string{"listener=tcp"}, 1},
		{"gatework_gateway_closes_total", []string{"reason=client_closed"}, 1},
		{"gatework_gateway_closes_total", []string{"reason=close_requested"}, 1},
		{"gatework_gateway_messages_in_total", nil, 3 * perClient},
		{"gatework_gateway_messages_out_total", nil, 3*perClient + 4},
		{"gatework_gateway_bytes_in_total", nil, float64(3 * perClient * len("hello 0/0"))},
		{"gatework_gateway_bytes_out_total", nil, float64(3 * perClient * len("hello 0/0"))},
		{"gatework_gateway_event_batches_total", nil, 4},
		{"gatework_worker_batches_acked_total", []string{worker}, 4},
		{"gatework_worker_events_acked_total", []string{worker}, minEvents},
		{"gatework_bus_event_ack_seconds", nil, 4},
		{"gatework_bus_connected", nil, 1},
		{"gatework_bus_rtt_seconds", nil, 1e-9},
		{"gatework_bus_messages_out_total", nil, 4},
		{"gatework_http_requests_total", []string{"method=sendToAll", "code=200"}, 1},
		{"gatework_http_requests_total", []string{"method=sendToAll", "code=403"}, 1},
		{"gatework_http_requests_total", []string{"method=closeClient", "code=200"}, 1},
		{"gatework_http_auth_failures_total", []string{"reason=wrong"}, 1},
		{"gatework_http_auth_failures_total", []string{"reason=missing"}, 1},
		{"gatework_http_auth_failures_total", []string{"reason=scope"}, 2},
		{"go_goroutines", nil, 1},
	}
	for _, m := range atLeast {
		v, ok := metricValue(fams, m.name, m.labels...)
		if !ok || v < m.min {
			t.Errorf("%s%v = %v (present %v), want at least %v", m.name, m.labels, v, ok, m.min)
		}
	}
	exact := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"gatework_gateway_closes_total", []string{"reason=close_requested"}, 1},
		{"gatework_gateway_closes_total", []string{"reason=slow_consumer"}, 0},
		{"gatework_gateway_queued_bytes", nil, 0}, // everything was written
		{"gatework_gateway_event_batches_in_flight", nil, 0},
		{"gatework_gateway_event_batches_parked", nil, 0},
		{"gatework_gateway_bad_acks_total", nil, 0},
		{"gatework_gateway_uids", nil, 0},
		{"gatework_gateway_groups", nil, 0},
		{"gatework_http_auth_failures_total", []string{"reason=wrong"}, 1},
	}
	for _, m := range exact {
		if v, ok := metricValue(fams, m.name, m.labels...); !ok || v != m.want {
			t.Errorf("%s%v = %v (present %v), want %v", m.name, m.labels, v, ok, m.want)
		}
	}
	for _, name := range []string{"gatework_gateway_event_batches_redelivered_total", "gatework_gateway_bad_commands_total",
		"gatework_bus_reconnects_total", "gatework_bus_messages_in_total", "gatework_bus_bytes_in_total", "gatework_bus_bytes_out_total"} {
		if _, ok := metricValue(fams, name); !ok {
			t.Errorf("%s missing from the scrape", name)
		}
	}
	// The scrape never shows a token.
	_, raw := httpDo(t, n, http.MethodGet, "/metrics", adminTok, "")
	for _, tok := range []string{adminTok, readTok, scrapeTok} {
		if strings.Contains(string(raw), tok) {
			t.Errorf("the scrape shows a token")
		}
	}
}

// readyz fetches /readyz and decodes it.
func readyz(t *testing.T, n *node.Node) (int, map[string]any) {
	t.Helper()
	st, body := httpDo(t, n, http.MethodGet, "/readyz", "", "")
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return st, m
}

// TestReadyz takes the bus away and back, then stops the gateway, and
// checks /readyz and /healthz (no token needed for either) at each step.
func TestReadyz(t *testing.T) {
	e, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:0", User: "readyz", Password: "readyz-pw"})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(e.ClientURL(), "nats://")
	t.Cleanup(func() { e.Shutdown() }) // after the node's cleanup: e is the restarted server by then
	n := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.URL = e.ClientURL()
		c.NATS.User, c.NATS.Password = "readyz", "readyz-pw"
		c.HTTP.Token = adminTok
	})
	healthy := func() {
		t.Helper()
		if st, body := httpDo(t, n, http.MethodGet, "/healthz", "", ""); st != 200 {
			t.Errorf("healthz: %d %s", st, body)
		}
	}
	if st, m := readyz(t, n); st != 200 || m["status"] != "ready" {
		t.Fatalf("readyz at start: %d %v", st, m)
	}
	healthy()

	e.Shutdown()
	waitFor(t, 5*time.Second, func() bool { st, _ := readyz(t, n); return st == http.StatusServiceUnavailable })
	_, m := readyz(t, n)
	if fmt.Sprint(m["not_ready"]) != "[bus]" || m["status"] != "not_ready" {
		t.Errorf("readyz with the bus down: %v", m)
	}
	healthy()

	// The bus comes back on the same address: ready again.
	if e, err = natsembed.Start(natsembed.Config{Listen: addr, User: "readyz", Password: "readyz-pw"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { st, _ := readyz(t, n); return st == http.StatusOK })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Gateway().Shutdown(ctx); err != nil {
		t.Fatalf("gateway shutdown: %v", err)
	}
	st, m := readyz(t, n)
	if st != http.StatusServiceUnavailable || fmt.Sprint(m["not_ready"]) != "[listeners]" {
		t.Errorf("readyz after the gateway stopped: %d %v", st, m)
	}
	healthy()
}
