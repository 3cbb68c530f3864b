package gateway

import (
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the parts of Stats that need more than a counter: the
// per-listener and per-worker tables, the queued bytes and the ack latency
// histogram. Package metrics exports them to Prometheus.

// ListenerStats is one listener's part of Stats.
type ListenerStats struct {
	Connections int64  `json:"connections"` // open now (handshake done)
	Accepted    uint64 `json:"accepted"`    // registered since Start
}

// WorkerStats is what the gateway saw of one worker: the final acks it
// sent for this gateway's event batches.
type WorkerStats struct {
	Batches uint64 `json:"batches"` // event batches acknowledged
	Events  uint64 `json:"events"`  // events in those batches
}

// LatencyBounds are the upper bounds, in seconds, of the buckets of
// LatencyHistogram. Read only.
var LatencyBounds = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// LatencyHistogram is a snapshot of a latency distribution. Counts[i] is
// the number of observations at most LatencyBounds[i] and above the bound
// before it (not cumulative); the last element counts those above every
// bound. Counts is nil before the first observation.
type LatencyHistogram struct {
	Counts     []uint64 `json:"counts,omitempty"`
	Count      uint64   `json:"count"`
	SumSeconds float64  `json:"sum_seconds"`
}

// latencyHistogram records durations lock-free.
type latencyHistogram struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64
	sumNs  atomic.Int64
}

func (h *latencyHistogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	secs := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && secs > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

func (h *latencyHistogram) snapshot() LatencyHistogram {
	var out LatencyHistogram
	counts := make([]uint64, len(h.counts))
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		out.Count += counts[i]
	}
	if out.Count > 0 {
		out.Counts = counts
	}
	out.SumSeconds = time.Duration(h.sumNs.Load()).Seconds()
	return out
}

// Bounds of the worker table: at most maxWorkerStats worker ids are
// tracked; an id without an ack for workerStatsTTL is forgotten when a new
// id arrives, and if the table is still full the id acked longest ago is
// dropped. Workers come and go with reloads; their ids must not pile up.
const (
	maxWorkerStats = 256
	workerStatsTTL = 15 * time.Minute
)

// workerTable counts final acks by worker id. Acks arrive on one NATS
// subscription goroutine, so its lock is contended only by Stats.
type workerTable struct {
	mu   sync.Mutex
	byID map[string]*workerCount
}

type workerCount struct {
	WorkerStats
	lastNs int64
}

func (t *workerTable) add(id string, events int, now time.Time) {
	if id == "" {
		id = "unknown" // a worker of another language that sends no id
	}
	nowNs := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	wc := t.byID[id]
	if wc == nil {
		if t.byID == nil {
			t.byID = make(map[string]*workerCount)
		}
		t.makeRoomLocked(nowNs)
		wc = &workerCount{}
		t.byID[id] = wc
	}
	wc.Batches++
	wc.Events += uint64(events)
	wc.lastNs = nowNs
}

// makeRoomLocked forgets stale ids, then the oldest if still full.
func (t *workerTable) makeRoomLocked(nowNs int64) {
	if len(t.byID) < maxWorkerStats/2 {
		return
	}
	oldest, oldestNs := "", int64(0)
	for id, wc := range t.byID {
		if nowNs-wc.lastNs > int64(workerStatsTTL) {
			delete(t.byID, id)
			continue
		}
		if oldest == "" || wc.lastNs < oldestNs {
			oldest, oldestNs = id, wc.lastNs
		}
	}
	if len(t.byID) >= maxWorkerStats {
		delete(t.byID, oldest)
	}
}

func (t *workerTable) snapshot() map[string]WorkerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]WorkerStats, len(t.byID))
	for id, wc := range t.byID {
		out[id] = wc.WorkerStats
	}
	return out
}

// recordAck records the final ack of d by worker.
func (s *Server) recordAck(d *delivery, worker string) {
	now := time.Now()
	s.stats.ackLatency.observe(now.Sub(time.Unix(0, d.published.Load())))
	s.stats.workers.add(worker, len(d.events), now)
}

// moreStats fills the table-like parts of st. The queued bytes are summed
// over every connection, one shard lock at a time: O(connections) per
// call, which is fine at a scrape every few seconds.
func (s *Server) moreStats(st *Stats) {
	st.Listeners = make(map[string]ListenerStats, len(s.listeners))
	for _, l := range s.listeners {
		st.Listeners[l.cfg.Name] = ListenerStats{Connections: l.open.Load(), Accepted: l.accepted.Load()}
	}
	for _, sh := range s.shards {
		sh.mu.Lock()
		for _, c := range sh.conns {
			st.QueuedBytes += int64(len(c.out)) + c.unsent.Load()
		}
		sh.mu.Unlock()
	}
	st.Workers = s.stats.workers.snapshot()
	st.AckLatency = s.stats.ackLatency.snapshot()
}
