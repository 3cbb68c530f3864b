package worker

import (
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestFloorPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name        string
		floor, live uint64
		base, want  int
	}{
		{"small live heap: the cap", 16 * mib, 2 * mib, 100, 400},
		{"no live heap yet", 16 * mib, 0, 100, 400},
		{"live 8 MiB: goal 24 MiB", 16 * mib, 8 * mib, 100, 200},
		{"live 10 MiB", 16 * mib, 10 * mib, 100, 160},
		{"live above the floor: GOGC", 16 * mib, 64 * mib, 100, 100},
		{"never below a higher GOGC", 16 * mib, 8 * mib, 300, 300},
		{"a GOGC above the cap stays", 16 * mib, 2 * mib, 800, 800},
		{"a lower GOGC is raised", 16 * mib, 16 * mib, 50, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := floorPercent(tc.floor, tc.live, tc.base); got != tc.want {
				t.Errorf("floorPercent(%d, %d, %d) = %d, want %d", tc.floor, tc.live, tc.base, got, tc.want)
			}
		})
	}
}

// TestHeapFloorPolicy runs the monitor's ticks through a heapFloor whose
// setter is recorded: raised only once the collector is busy, kept while
// batches come, back to GOGC at the first quiet tick, and not set again
// for a small change.
func TestHeapFloorPolicy(t *testing.T) {
	const mib = 1 << 20
	var sets []int
	f := &heapFloor{floor: 16 * mib, base: 100, percent: 100, log: slog.New(slog.DiscardHandler),
		setPercent: func(p int) int { sets = append(sets, p); return 0 }}
	steps := []struct {
		name                string
		taken, cycles, live uint64
		want                int // percent in force after the tick
		sets                int // calls of setPercent so far
	}{
		{"a few collections: nothing", 100, 2, 2 * mib, 100, 0},
		{"busy collector: raised", 5000, 8, 2 * mib, 400, 1},
		{"still busy, fewer collections: kept", 9000, 9, 2 * mib, 400, 1},
		{"live heap grew: lowered", 13000, 10, 8 * mib, 200, 2},
		{"a small change: left", 17000, 11, 7 * mib, 200, 2},
		{"quiet: GOGC back", 17000, 11, 7 * mib, 100, 3},
		{"quiet again: nothing", 17000, 11, 2 * mib, 100, 3},
		{"busy again", 30000, 20, 20 * mib, 100, 3}, // live above the floor: GOGC already
	}
	for _, s := range steps {
		f.apply(s.taken, s.cycles, s.live)
		if f.percent != s.want || len(sets) != s.sets {
			t.Fatalf("%s: percent %d after %d sets %v, want %d after %d", s.name, f.percent, len(sets), sets, s.want, s.sets)
		}
	}
}

// TestHeapFloorOff: no floor, or GOGC=off, gives no policy.
func TestHeapFloorOff(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if f := newHeapFloor(0, log); f != nil {
		t.Error("a policy without a floor")
	}
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	if f := newHeapFloor(16<<20, log); f != nil {
		t.Error("a policy with GOGC=off")
	}
	debug.SetGCPercent(150)
	f := newHeapFloor(16<<20, log)
	if f == nil || f.base != 150 {
		t.Fatalf("policy %+v, want one with base 150", f)
	}
}
