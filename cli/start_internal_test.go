package cli

import (
	"testing"

	"github.com/gatework/gatework/gateway"
)

func TestListenerHint(t *testing.T) {
	tls := &gateway.TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"}
	mtls := &gateway.TLSConfig{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"}
	tests := []struct {
		name string
		l    gateway.ListenerConfig
		want string
	}{
		{"ws", gateway.ListenerConfig{Protocol: "ws"}, "websocat ws://127.0.0.1:7272/"},
		{"ws path", gateway.ListenerConfig{Protocol: "ws", Path: "/ws"}, "websocat ws://127.0.0.1:7272/ws"},
		{"wss", gateway.ListenerConfig{Protocol: "ws", Path: "/ws", TLS: tls}, "websocat wss://127.0.0.1:7272/ws"},
		{"tcp", gateway.ListenerConfig{Protocol: "tcp"}, "nc 127.0.0.1 7272"},
		{"tcp tls", gateway.ListenerConfig{Protocol: "tcp", TLS: tls}, "openssl s_client -quiet -connect 127.0.0.1:7272"},
		{"tcp mutual tls", gateway.ListenerConfig{Protocol: "tcp", TLS: mtls},
			"openssl s_client -quiet -connect 127.0.0.1:7272 -cert client.pem -key client-key.pem"},
		{"udp", gateway.ListenerConfig{Protocol: "udp"}, "nc -u 127.0.0.1 7272"},
		{"other", gateway.ListenerConfig{Protocol: "sctp"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := listenerHint(tt.l, "127.0.0.1:7272"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
