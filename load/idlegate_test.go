package load

import (
	"testing"
	"time"
)

func TestTooBusy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		prev, cur BoxCPU
		minIdle   float64
		want      bool
	}{
		{"idle box", BoxCPU{Busy: 100, Total: 1000}, BoxCPU{Busy: 110, Total: 1200}, 0.1, false},
		{"saturated", BoxCPU{Busy: 100, Total: 1000}, BoxCPU{Busy: 300, Total: 1200}, 0.1, true},
		{"just at the bound", BoxCPU{Busy: 0, Total: 0}, BoxCPU{Busy: 90, Total: 100}, 0.1, false},
		{"just below", BoxCPU{Busy: 0, Total: 0}, BoxCPU{Busy: 91, Total: 100}, 0.1, true},
		{"no time passed", BoxCPU{Busy: 5, Total: 10}, BoxCPU{Busy: 5, Total: 10}, 0.5, false},
		{"gate off", BoxCPU{Busy: 0, Total: 0}, BoxCPU{Busy: 100, Total: 100}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tooBusy(tc.prev, tc.cur, tc.minIdle); got != tc.want {
				t.Fatalf("tooBusy = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestIdleGateCloses runs the real sampler with a bound no machine can
// meet (more than all of it idle) and one every machine meets.
func TestIdleGateCloses(t *testing.T) {
	closed := startIdleGate(1.01)
	open := startIdleGate(0)
	defer closed.Stop()
	defer open.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for !closed.Paused() {
		if time.Now().After(deadline) {
			t.Fatal("a gate asking for more than 100% idle never closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if open.Paused() {
		t.Fatal("a gate asking for 0% idle closed")
	}
}
