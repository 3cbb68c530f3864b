package worker

import (
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
)

// The heap floor (Config.HeapFloor). A worker process's live heap is
// small (1–2 MiB: the batches in hand, the decoders' strings), so at the
// default GOGC the collector runs each time the heap reaches the
// runtime's minimum goal of 4 MiB: under a steady event load, ten or more
// collections a second, each with its mark workers, its sweep and, after
// it, the scavenger handing pages back that the next allocations fault in
// again (docs/benchmarks.md, "W3 echo, round 8"). While the collector runs
// that often, the monitor raises the GC percent so that the heap goal is
// about the live heap plus the floor; once the worker is quiet it puts the
// process's own percent back, before Config.ReleaseMemory returns the
// burst's memory.

// Bounds of the heap floor's policy.
const (
	// floorBusyCycles is how many collections within one monitor tick
	// make the collector busy enough to raise the goal.
	floorBusyCycles = 4
	// floorMaxPercent is the highest GC percent the floor sets: the heap
	// goal is never more than 5× the live heap.
	floorMaxPercent = 400
)

// heapFloor is the monitor's record of Config.HeapFloor.
type heapFloor struct {
	floor   uint64 // Config.HeapFloor
	base    int    // the process's GC percent when the worker started
	percent int    // the GC percent in force
	cycles  uint64 // completed collections at the previous tick
	seen    uint64 // batches taken at the previous tick
	sample  [2]metrics.Sample
	// setPercent is debug.SetGCPercent; a field for the tests.
	setPercent func(int) int
	log        *slog.Logger
}

// newHeapFloor returns the policy for floor bytes, reading the process's
// GC percent (GOGC). It returns nil when there is nothing to do: no
// floor, or the collector off.
func newHeapFloor(floor int64, log *slog.Logger) *heapFloor {
	if floor <= 0 {
		return nil
	}
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[0].Value.Uint64() > math.MaxInt32 {
		return nil // GOGC=off (reported as -1): the process's own choice
	}
	base := int(s[0].Value.Uint64())
	f := &heapFloor{floor: uint64(floor), base: base, percent: base, setPercent: debug.SetGCPercent, log: log}
	f.sample[0].Name = "/gc/cycles/total:gc-cycles"
	f.sample[1].Name = "/gc/heap/live:bytes"
	metrics.Read(f.sample[:])
	f.cycles = f.sample[0].Value.Uint64()
	return f
}

// tick applies the policy once per monitor tick; taken is the count of
// batches the worker has taken so far.
func (f *heapFloor) tick(taken uint64) {
	metrics.Read(f.sample[:])
	f.apply(taken, f.sample[0].Value.Uint64(), f.sample[1].Value.Uint64())
}

// apply is tick with the runtime's figures read: cycles is the count of
// completed collections so far, live the live heap's bytes. A tick with
// no new batch puts the process's percent back; one after
// floorBusyCycles collections or more, or while the floor is up, sets
// the percent for the live heap now.
func (f *heapFloor) apply(taken, cycles, live uint64) {
	ran := cycles - f.cycles
	quiet := taken == f.seen
	f.cycles, f.seen = cycles, taken
	switch {
	case quiet:
		f.set(f.base)
	case ran >= floorBusyCycles || f.percent != f.base:
		f.set(floorPercent(f.floor, live, f.base))
	}
}

// set makes p the GC percent unless it is already about that (within a
// quarter), so that a steady load does not move it each tick.
func (f *heapFloor) set(p int) {
	if p == f.percent || (p != f.base && p*4 > f.percent*3 && p*4 < f.percent*5) {
		return
	}
	f.setPercent(p)
	f.percent = p
	f.log.Debug("heap floor: GC percent set", "gc_percent", p, "gogc", f.base)
}

// floorPercent is the GC percent that makes the heap goal about live +
// floor bytes, never below base nor above floorMaxPercent (nor base,
// when base is higher).
func floorPercent(floor, live uint64, base int) int {
	p := floorMaxPercent
	if live > 0 && floor/live < floorMaxPercent/100 {
		p = int(floor * 100 / live)
	}
	return max(base, min(p, floorMaxPercent))
}
