package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/internal/framing"
)

func TestConfigValidate(t *testing.T) {
	ws := ListenerConfig{Protocol: "ws", Addr: "127.0.0.1:0"}
	tcp := ListenerConfig{Protocol: "tcp", Addr: "127.0.0.1:0"}
	udp := ListenerConfig{Protocol: "udp", Addr: "127.0.0.1:0"}
	with := func(l ListenerConfig, f func(*ListenerConfig)) ListenerConfig { f(&l); return l }
	tests := []struct {
		name      string
		listeners []ListenerConfig
		prefix    string
		wantKey   string // "" means valid
	}{
		{"defaults", []ListenerConfig{ws, tcp}, "", ""},
		{"no listeners", nil, "", "listeners"},
		{"missing protocol", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Protocol = "" })}, "", "listeners[0].protocol"},
		{"unknown protocol", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Protocol = "udp5" })}, "", "listeners[0].protocol"},
		{"bad addr", []ListenerConfig{ws, with(tcp, func(l *ListenerConfig) { l.Addr = "7273" })}, "", "listeners[1].addr"},
		{"negative max_message", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.MaxMessage = -1 })}, "", "listeners[0].max_message"},
		{"negative queue", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.MaxQueueBytes = -1 })}, "", "listeners[0].max_queue_bytes"},
		{"bad message_type", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.MessageType = "json" })}, "", "listeners[0].message_type"},
		{"framing on ws", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Framing = framing.Config{Kind: "line"} })}, "", "listeners[0].framing"},
		{"path on tcp", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.Path = "/ws" })}, "", "listeners[0].path"},
		{"message_type on tcp", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.MessageType = "text" })}, "", "listeners[0].message_type"},
		{"relative path", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Path = "ws" })}, "", "listeners[0].path"},
		{"bad framing", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.Framing = framing.Config{Kind: "length", LengthSize: 3} })}, "", "listeners[0].framing: framing: length_size"},
		{"duplicate name", []ListenerConfig{ws, ws}, "", "listeners[1].name"},
		{"two named ws", []ListenerConfig{ws, with(ws, func(l *ListenerConfig) { l.Name = "ws2" })}, "", ""},
		{"json codec", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Codec = "json"; l.DecodeError = "event" })}, "", ""},
		{"unknown codec", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Codec = "protobuf" })}, "", "listeners[0].codec"},
		{"bad decode_error", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Codec = "json"; l.DecodeError = "drop" })}, "", "listeners[0].decode_error"},
		{"decode_error event on raw", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.DecodeError = "event" })}, "", "listeners[0].decode_error"},
		{"bad prefix", []ListenerConfig{ws}, "gw.*", "prefix"},
		{"queue policies", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.QueuePolicy = QueueDropOldest }),
			with(tcp, func(l *ListenerConfig) { l.QueuePolicy = QueueDropNewest })}, "", ""},
		{"bad queue_policy", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.QueuePolicy = "drop" })}, "", "listeners[0].queue_policy"},
		{"heartbeat off", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.PingInterval, l.IdleTimeout = -1, -1 })}, "", ""},
		{"ping without unit", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.PingInterval = 25 })}, "", "listeners[0].ping_interval"},
		{"idle without unit", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.IdleTimeout = 60 })}, "", "listeners[0].idle_timeout"},
		{"ping_data with the delimiter", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.PingData = "p\n" })}, "", "listeners[0].ping_data"},
		{"ping_data framed", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.PingData = "p" })}, "", ""},
		{"ping_data on ws", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.PingData = "p" })}, "", "listeners[0].ping_data"},
		{"udp", []ListenerConfig{udp, with(udp, func(l *ListenerConfig) {
			l.Name, l.Framing, l.MaxPeers = "udp2", framing.Config{Kind: "length", LengthSize: 2}, 10
		})}, "", ""},
		{"udp with tls", []ListenerConfig{with(udp, func(l *ListenerConfig) { l.TLS = &TLSConfig{CertFile: "c", KeyFile: "k"} })}, "", "listeners[0].tls"},
		{"udp with line framing", []ListenerConfig{with(udp, func(l *ListenerConfig) { l.Framing = framing.Config{Kind: "line"} })}, "", "listeners[0].framing.kind"},
		{"udp with path", []ListenerConfig{with(udp, func(l *ListenerConfig) { l.Path = "/x" })}, "", "listeners[0].path"},
		{"udp with origins", []ListenerConfig{with(udp, func(l *ListenerConfig) { l.Origins = []string{"*"} })}, "", "listeners[0].origins"},
		{"udp with ping_data", []ListenerConfig{with(udp, func(l *ListenerConfig) { l.PingData = "p" })}, "", "listeners[0].ping_data"},
		{"negative max_peers", []ListenerConfig{with(udp, func(l *ListenerConfig) { l.MaxPeers = -1 })}, "", "listeners[0].max_peers"},
		{"max_peers on tcp", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.MaxPeers = 5 })}, "", "listeners[0].max_peers"},
		{"compression", []ListenerConfig{with(ws, func(l *ListenerConfig) {
			l.Compression = Compression{Enabled: true, Level: 9, MinSize: 1, ClientMaxWindowBits: 8}
		})}, "", ""},
		{"upgrade hook", []ListenerConfig{with(ws, func(l *ListenerConfig) {
			l.UpgradeHook, l.UpgradeTimeout, l.UpgradeMaxPending = true, time.Second, 8
		})}, "", ""},
		{"upgrade_hook on tcp", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.UpgradeHook = true })}, "", "listeners[0].upgrade_hook"},
		{"upgrade_timeout on udp", []ListenerConfig{with(udp, func(l *ListenerConfig) { l.UpgradeTimeout = time.Second })}, "", "listeners[0].upgrade_timeout"},
		{"negative upgrade_timeout", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.UpgradeTimeout = -time.Second })}, "", "listeners[0].upgrade_timeout"},
		{"negative upgrade_max_pending", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.UpgradeMaxPending = -1 })}, "", "listeners[0].upgrade_max_pending"},
		{"compression on tcp", []ListenerConfig{with(tcp, func(l *ListenerConfig) { l.Compression = Compression{Enabled: true} })}, "", "listeners[0].compression"},
		{"compression level 10", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Compression = Compression{Enabled: true, Level: 10} })}, "", "listeners[0].compression.level"},
		{"compression negative min_size", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Compression = Compression{Enabled: true, MinSize: -1} })}, "", "listeners[0].compression.min_size"},
		{"client_max_window_bits 7", []ListenerConfig{with(ws, func(l *ListenerConfig) { l.Compression = Compression{Enabled: true, ClientMaxWindowBits: 7} })}, "", "listeners[0].compression.client_max_window_bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Config{Listeners: tt.listeners, Prefix: tt.prefix}.Validate()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("error %v does not name %q", err, tt.wantKey)
			}
		})
	}
}

func TestReasonCodes(t *testing.T) {
	want := map[CloseReason]int{
		ReasonMessageTooLarge: 1009, ReasonInvalidUTF8: 1007, ReasonProtocolError: 1002,
		ReasonSlowConsumer: 1008, ReasonThrottled: 1008, ReasonEventBacklog: 1013, ReasonShutdown: 1001, ReasonCloseRequested: 1000,
		ReasonIdleTimeout: 1001,
	}
	for r, code := range want {
		if got := r.wsCode(); got != code {
			t.Errorf("%s: code %d, want %d", r, got, code)
		}
	}
	seen := map[string]bool{}
	for r := range reasonCount {
		if s := r.String(); s == "unknown" || seen[s] {
			t.Errorf("reason %d has name %q", r, s)
		} else {
			seen[s] = true
		}
	}
}

func TestAppendWSFrame(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := appendWSFrame(nil, wsText, make([]byte, n))
		var hdr int
		switch {
		case n < 126:
			hdr = 2
		case n <= 65535:
			hdr = 4
		default:
			hdr = 10
		}
		if len(f) != hdr+n || f[0] != 0x81 {
			t.Errorf("n=%d: frame len %d, first byte %#x", n, len(f), f[0])
		}
	}
}

func TestHeartbeatDefaults(t *testing.T) {
	tests := []struct {
		name       string
		in         ListenerConfig
		ping, idle time.Duration
		pings      bool
	}{
		{"ws", ListenerConfig{Protocol: "ws"}, DefaultPingInterval, DefaultIdleTimeout, true},
		{"ws off", ListenerConfig{Protocol: "ws", PingInterval: -1, IdleTimeout: -1}, -1, -1, false},
		{"tcp", ListenerConfig{Protocol: "tcp"}, 0, 0, false},
		{"tcp ping_data", ListenerConfig{Protocol: "tcp", PingData: "p"}, DefaultPingInterval, 0, true},
		{"tcp set", ListenerConfig{Protocol: "tcp", PingData: "p", PingInterval: time.Second, IdleTimeout: 3 * time.Second}, time.Second, 3 * time.Second, true},
	}
	for _, tt := range tests {
		c := Config{Listeners: []ListenerConfig{tt.in}}
		c.applyDefaults()
		l := c.Listeners[0]
		if l.PingInterval != tt.ping || l.IdleTimeout != tt.idle || l.QueuePolicy != QueueDisconnect {
			t.Errorf("%s: ping %v idle %v policy %q; want %v %v disconnect", tt.name, l.PingInterval, l.IdleTimeout, l.QueuePolicy, tt.ping, tt.idle)
		}
		if got := (&listener{cfg: l}).pingFrame() != nil; got != tt.pings {
			t.Errorf("%s: pings %v, want %v", tt.name, got, tt.pings)
		}
	}
}
