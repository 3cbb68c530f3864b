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

// TestWorkerGOMAXPROCS: the GOMAXPROCS and the worker.concurrency the
// worker processes get, for each configuration.
func TestWorkerGOMAXPROCS(t *testing.T) {
	tests := []struct {
		name     string
		w        WorkerConfig
		envSet   bool
		cpus     int
		want     int // GOMAXPROCS, 0 for the environment's
		wantConc int // worker.concurrency, 0 for 64 x GOMAXPROCS
	}{
		{"one per cpu", WorkerConfig{Processes: 2}, false, 2, 1, 128},
		{"more than cpus", WorkerConfig{Processes: 4}, false, 2, 1, 128},
		{"fewer than cpus", WorkerConfig{Processes: 2}, false, 8, 0, 0},
		{"environment decides", WorkerConfig{Processes: 2}, true, 2, 0, 0},
		{"configured", WorkerConfig{Processes: 2, GOMAXPROCS: 3}, true, 2, 3, 0},
		{"configured, few processes", WorkerConfig{Processes: 1, GOMAXPROCS: 2}, false, 8, 2, 0},
		{"configured to one", WorkerConfig{Processes: 2, GOMAXPROCS: 1}, false, 2, 1, 0},
		{"concurrency set", WorkerConfig{Processes: 2, Concurrency: 10}, false, 2, 1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := workerGOMAXPROCS(tt.w, tt.envSet, tt.cpus); got != tt.want {
				t.Errorf("workerGOMAXPROCS = %d, want %d", got, tt.want)
			}
			if got := workerConcurrency(tt.w, tt.envSet, tt.cpus); got != tt.wantConc {
				t.Errorf("workerConcurrency = %d, want %d", got, tt.wantConc)
			}
		})
	}
}

// TestMasterGOMAXPROCS: the master's own GOMAXPROCS (gateway.gomaxprocs and
// its default).
func TestMasterGOMAXPROCS(t *testing.T) {
	tests := []struct {
		name     string
		g        GatewayConfig
		children bool
		envSet   bool
		cpus     int
		want     int // 0: Go's default (or the environment's)
	}{
		{"worker processes, 2 cpus", GatewayConfig{}, true, false, 2, 1},
		{"worker processes, 16 cpus", GatewayConfig{}, true, false, 16, 8},
		{"worker processes, 1 cpu", GatewayConfig{}, true, false, 1, 1},
		{"worker inside the master", GatewayConfig{}, false, false, 2, 0},
		{"environment decides", GatewayConfig{}, true, true, 2, 0},
		{"configured", GatewayConfig{GOMAXPROCS: 2}, true, false, 2, 2},
		{"configured, environment set", GatewayConfig{GOMAXPROCS: 3}, false, true, 2, 3},
		{"gateway processes: their own", GatewayConfig{Processes: 4, GOMAXPROCS: 2}, true, false, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Gateway: tt.g}
			if got := masterGOMAXPROCS(c, tt.children, tt.envSet, tt.cpus); got != tt.want {
				t.Errorf("masterGOMAXPROCS = %d, want %d", got, tt.want)
			}
		})
	}
}
