package gateway

import (
	"runtime"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestPollersReachEngine: Config.Pollers is the number of nbio pollers
// of every ws and tcp listener's engine; 0 means GOMAXPROCS.
func TestPollersReachEngine(t *testing.T) {
	nc := testBus(t)
	tests := []struct {
		name    string
		pollers int
		want    int
	}{
		{"default", 0, runtime.GOMAXPROCS(0)},
		{"one", 1, 1},
		{"three", 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startWSAndTCP(t, nc, tt.pollers)
			for _, l := range s.listeners {
				ne := nbioEngineOf(t, l)
				ne.mu.Lock()
				got := ne.engine.NPoller
				ne.mu.Unlock()
				if got != tt.want {
					t.Errorf("listener %s: %d pollers, want %d", l.cfg.Protocol, got, tt.want)
				}
			}
		})
	}
}

// startWSAndTCP starts a server with a ws and a tcp listener on
// 127.0.0.1 and pollers pollers each, shut down at the end of the test.
func startWSAndTCP(t *testing.T, nc *nats.Conn, pollers int) *Server {
	t.Helper()
	s := startServer(t, nc, Config{Pollers: pollers, Listeners: []ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0"},
		{Protocol: "tcp", Addr: "127.0.0.1:0"},
	}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	return s
}

// nbioEngineOf returns the socket engine of a ws or tcp listener.
func nbioEngineOf(t *testing.T, l *listener) *nbioEngine {
	t.Helper()
	switch e := l.eng.(type) {
	case *wsEngine:
		return &e.nbioEngine
	case *tcpEngine:
		return &e.nbioEngine
	}
	t.Fatalf("listener %s: engine %T", l.cfg.Protocol, l.eng)
	return nil
}
