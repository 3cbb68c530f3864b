package gateway

import (
	"fmt"
	"testing"
	"time"
)

func TestWorkerTableBound(t *testing.T) {
	var wt workerTable
	start := time.Unix(1_000_000, 0)
	for i := range maxWorkerStats {
		wt.add(fmt.Sprintf("w%d", i), 2, start.Add(time.Duration(i)*time.Second))
	}
	wt.add("", 1, start.Add(maxWorkerStats*time.Second)) // over the bound: w0, acked longest ago, goes
	got := wt.snapshot()
	if len(got) > maxWorkerStats {
		t.Fatalf("%d ids kept, bound %d", len(got), maxWorkerStats)
	}
	if _, ok := got["w0"]; ok {
		t.Error("the oldest id was kept")
	}
	if got["unknown"] != (WorkerStats{Batches: 1, Events: 1}) {
		t.Errorf("an ack without a worker id: %+v", got["unknown"])
	}
	// Much later, one worker acks on: the others are stale and go when
	// the next new id arrives.
	later := start.Add(time.Hour)
	wt.add("w5", 3, later)
	wt.add("fresh", 1, later.Add(time.Second))
	got = wt.snapshot()
	if len(got) != 2 || got["w5"] != (WorkerStats{Batches: 2, Events: 5}) || got["fresh"].Batches != 1 {
		t.Errorf("after the TTL: %+v", got)
	}
}

func TestLatencyHistogram(t *testing.T) {
	var h latencyHistogram
	if s := h.snapshot(); s.Counts != nil || s.Count != 0 {
		t.Fatalf("empty: %+v", s)
	}
	for _, d := range []time.Duration{-time.Second, 300 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, time.Minute} {
		h.observe(d)
	}
	s := h.snapshot()
	want := make([]uint64, len(LatencyBounds)+1)
	want[0] = 2                  // negative (as 0) and 0.3 ms: ≤ 0.5 ms
	want[1] = 1                  // 1 ms: ≤ 1 ms (bounds are inclusive)
	want[3] = 1                  // 3 ms: ≤ 5 ms
	want[len(LatencyBounds)] = 1 // a minute: above every bound
	if fmt.Sprint(s.Counts) != fmt.Sprint(want) || s.Count != 5 {
		t.Errorf("counts %v, want %v (count %d)", s.Counts, want, s.Count)
	}
	if s.SumSeconds < 60.004 || s.SumSeconds > 60.005 {
		t.Errorf("sum %v", s.SumSeconds)
	}
}
