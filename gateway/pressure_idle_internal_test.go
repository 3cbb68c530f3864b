package gateway

import (
	"testing"
	"time"
)

// TestPressurePeriod: an idle gateway's backlog sampler backs off from
// pressureEvery to pressureIdleMax; any connection scanned or command
// waiting brings it back to the normal period at once.
func TestPressurePeriod(t *testing.T) {
	for _, tt := range []struct {
		name             string
		conns, waiting   int
		idleFor          time.Duration
		wantNext, wantIF time.Duration
	}{
		{"first idle sample", 0, 0, 0, 2 * pressureEvery, 2 * pressureEvery},
		{"idle doubles", 0, 0, 40 * time.Millisecond, 80 * time.Millisecond, 80 * time.Millisecond},
		{"idle capped", 0, 0, pressureIdleMax, pressureIdleMax, pressureIdleMax},
		{"a connection scanned", 1, 0, pressureIdleMax, pressureEvery, 0},
		{"a command waiting", 0, 1, pressureIdleMax, pressureEvery, 0},
		{"many connections", 5 * pressureConnsPerTick, 0, 0, 5 * pressureEvery, 0},
	} {
		next, idleFor := pressurePeriod(tt.conns, tt.waiting, tt.idleFor)
		if next != tt.wantNext || idleFor != tt.wantIF {
			t.Errorf("%s: pressurePeriod(%d, %d, %v) = %v, %v; want %v, %v", tt.name, tt.conns, tt.waiting, tt.idleFor, next, idleFor, tt.wantNext, tt.wantIF)
		}
	}
}

// TestPressureWakesOnCommand: a command executed while the sampler backs
// off wakes it once; one executed while it samples at the normal period
// does not.
func TestPressureWakesOnCommand(t *testing.T) {
	p := &pressure{wake: make(chan struct{}, 1)}
	p.noteCommand()
	if len(p.wake) != 0 {
		t.Fatal("a command woke a sampler that was not idle")
	}
	p.idle.Store(true)
	p.noteCommand()
	p.noteCommand()
	if len(p.wake) != 1 || p.idle.Load() {
		t.Fatalf("after two commands while idle: %d wake-ups queued, idle %v; want 1 and false", len(p.wake), p.idle.Load())
	}
}
