package node_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
)

// TestProtectionMetricsScrape drives each protection of the gateway with
// real clients — a connection over max_conns_per_ip, a flood over the
// message budget, a refused origin, an idle client, a client that never
// reads while another gets broadcasts — and checks that a scrape of
// /metrics shows each of them with its label.
func TestProtectionMetricsScrape(t *testing.T) {
	n := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.Gateway.MaxConnsPerIP = 4
		c.Gateway.Listeners = []gateway.ListenerConfig{
			{Name: "ws", Protocol: "ws", Addr: "127.0.0.1:0", Origins: []string{"https://ok.example"},
				RateLimit: gateway.RateLimit{Messages: 1, Per: time.Hour, Burst: 2, Policy: "drop"}},
			{Name: "idle", Protocol: "ws", Addr: "127.0.0.1:0", IdleTimeout: 300 * time.Millisecond,
				PingInterval: -1},
			{Name: "slow", Protocol: "tcp", Addr: "127.0.0.1:0", MaxQueueBytes: 64 << 10,
				QueuePolicy: gateway.QueueDropNewest},
		}
		c.HTTP.Token = adminTok
	})
	base := "ws://" + n.Addr("ws").String() + "/"
	dial := func(url string, h http.Header) *websocket.Conn {
		t.Helper()
		ws, _, err := websocket.DefaultDialer.Dial(url, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws.Close() })
		return ws
	}

	// Per IP: 4 sockets from 127.0.0.1 are admitted, the fifth gets 429.
	flood := dial(base, nil)
	slow, err := net.Dial("tcp", n.Addr("slow").String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	third, fourth := dial(base, nil), dial(base, nil)
	waitFor(t, 5*time.Second, func() bool { return n.Gateway().Stats().Connections == 4 })
	if _, resp, err := websocket.DefaultDialer.Dial(base, nil); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("connection over max_conns_per_ip: %v %v, want 429", resp, err)
	}
	_, _ = third.Close(), fourth.Close()
	waitFor(t, 5*time.Second, func() bool { return n.Gateway().Stats().Connections == 2 })

	// Flood: a budget of 2 messages, 6 sent: 2 echoed, 4 dropped.
	for range 6 {
		if err := flood.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		readWS(t, flood)
	}

	// Origin refused: 403.
	h := http.Header{"Origin": {"https://evil.example"}}
	if _, resp, err := websocket.DefaultDialer.Dial(base, h); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bad origin: %v %v, want 403", resp, err)
	}

	// Idle: closed after 300ms with reason idle_timeout (1001).
	idle := dial("ws://"+n.Addr("idle").String()+"/", nil)
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := idle.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("idle client: %v, want close 1001", err)
	}
	_ = idle.Close()

	// Slow consumer: the TCP client never reads; broadcasts of 32 KiB
	// fill its 64 KiB queue (and the socket buffers), then drop_newest
	// drops them. The flood client keeps getting every broadcast.
	waitFor(t, 5*time.Second, func() bool { return n.Gateway().Stats().Connections == 2 })
	msg := make([]byte, 32<<10)
	for i := range msg {
		msg[i] = 'a' + byte(i%26)
	}
	body := `{"message":"` + string(msg) + `"}`
	dropped := func() bool { return n.Gateway().Stats().Dropped[gateway.QueueDropNewest] > 0 }
	for i := 0; i < 400 && !dropped(); i++ {
		if st, b := httpDo(t, n, http.MethodPost, "/api/sendToAll", adminTok, body); st != 200 {
			t.Fatalf("sendToAll: %d %s", st, b)
		}
		if _, got := readWS(t, flood); len(got) != len(msg) {
			t.Fatalf("broadcast of %d bytes arrived as %d", len(msg), len(got))
		}
	}
	if !dropped() {
		t.Fatal("400 broadcasts of 32 KiB to a client that never reads dropped nothing")
	}

	fams := scrape(t, n, adminTok)
	for _, tt := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"gatework_gateway_throttled_messages_total", []string{"policy=drop"}, 4},
		{"gatework_gateway_refused_total", []string{"cause=origin"}, 1},
		{"gatework_gateway_refused_total", []string{"cause=per_ip"}, 1},
		{"gatework_gateway_closes_total", []string{"reason=idle_timeout"}, 1},
		{"gatework_gateway_dropped_messages_total", []string{"policy=drop_newest"}, 1},
		{"gatework_gateway_connections", []string{"listener=slow"}, 1},
		{"gatework_gateway_bus_commands_received_total", nil, 1},
	} {
		v, ok := metricValue(fams, tt.name, tt.labels...)
		if !ok || v < tt.min {
			t.Errorf("%s%v = %v (present %v), want ≥ %v", tt.name, tt.labels, v, ok, tt.min)
		}
	}
	if v, _ := metricValue(fams, "gatework_gateway_throttled_messages_total", "policy=drop"); v != 4 {
		t.Errorf("throttled drop = %v, want exactly 4", v)
	}
}
