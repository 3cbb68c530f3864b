package gateway

import (
	"runtime"
	"testing"
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
			s := startServer(t, nc, Config{Pollers: tt.pollers, Listeners: []ListenerConfig{
				{Protocol: "ws", Addr: "127.0.0.1:0"},
				{Protocol: "tcp", Addr: "127.0.0.1:0"},
			}})
			t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
			for _, l := range s.listeners {
				var ne *nbioEngine
				switch e := l.eng.(type) {
				case *wsEngine:
					ne = &e.nbioEngine
				case *tcpEngine:
					ne = &e.nbioEngine
				default:
					t.Fatalf("listener %s: engine %T", l.cfg.Protocol, l.eng)
				}
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
