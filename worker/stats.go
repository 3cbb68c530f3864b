package worker

import "sync/atomic"

// Stats are a worker's counters since New, and its gauges now. Counters
// only grow.
type Stats struct {
	State State

	Batches     uint64 // batches taken in hand (decoded and accepted)
	Redelivered uint64 // of those, batches a gateway had delivered before (Attempt > 1)
	Acked       uint64 // final Acks sent
	Progress    uint64 // progress Acks sent
	Nacked      uint64 // nacks sent: batches that did not decode, or that Stop abandoned

	Connects          uint64 // events handled, by type
	WebSocketConnects uint64
	Messages          uint64
	Closes            uint64
	UnknownEvents     uint64 // events of a type this worker does not know: skipped

	Panics    uint64 // handlers (and OnWorkerStart/Stop) that panicked
	Malformed uint64 // messages that did not decode as a batch (nacked), or had no reply subject (dropped)
	Dropped   uint64 // "slow worker": batches dropped because the backlog or the NATS pending buffer was full
	Abandoned uint64 // batches not acknowledged because Stop's ctx expired
	AckErrors uint64 // Acks the NATS connection refused (closed, reconnect buffer full)

	// MemoryReleases counts the times the worker, idle after a burst,
	// returned its free memory to the operating system
	// (Config.ReleaseMemory).
	MemoryReleases uint64

	// Tasks are this process's task counters (see TaskStats).
	Tasks TaskStats
	// WorkerMessages are its worker-message counters.
	WorkerMessages MessageStats

	Busy    int // batches whose handlers run now
	Waiting int // batches in hand waiting for a free goroutine
	Pool    int // goroutines in the pool now (at most Config.Concurrency)
}

// TaskStats are a worker's task counters since New, and its gauges now.
type TaskStats struct {
	// The task-worker side (Handlers.OnTask).
	Queued    int    // tasks taken, waiting for a task goroutine now
	Running   int    // tasks whose handler runs now
	Taken     uint64 // tasks taken (accepted)
	Done      uint64 // tasks whose handler returned a result
	Failed    uint64 // tasks whose handler returned an error or panicked
	Retried   uint64 // tasks taken on an attempt after the first
	Refused   uint64 // tasks refused as busy (the pool and backlog were full; their submitters publish them again)
	Abandoned uint64 // tasks given up by Stop's deadline (their submitters publish them again)
	Expired   uint64 // tasks dropped because their submitter's deadline had passed
	// The submitter side (Task, TaskWait, TaskWaitMulti, TaskCo).
	Submitted    uint64 // tasks submitted
	SubmitFailed uint64 // Task calls that failed (payload too large, closed…)
	Finished     uint64 // outcomes of Task handed to OnFinish (errors included)
}

// MessageStats are a worker's worker-message counters since New.
type MessageStats struct {
	Sent     uint64 // SendMessage and SendMessageToAll calls that published
	Received uint64 // messages received (the broadcasts it sent itself included)
	Unknown  uint64 // SendMessage calls refused: unknown worker id
	Peers    int    // other workers it knows now (GetWorkerList minus itself)
}

// counters are the atomic counters behind Stats.
type counters struct {
	batches, redelivered, acked, progress, nacked                 atomic.Uint64
	connects, webSocketConnects, messages, closes, unknownEvents  atomic.Uint64
	panics, malformed, dropped, natsDropped, abandoned, ackErrors atomic.Uint64
	memoryReleases                                                atomic.Uint64
}

// Stats returns the worker's counters and gauges. It is cheap (atomic loads
// and one short lock) and safe to call at any time from any goroutine.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	s := Stats{State: w.state, Busy: w.running, Waiting: w.waiting, Pool: w.runners}
	w.mu.Unlock()
	c := &w.stats
	s.Batches = c.batches.Load()
	s.Redelivered = c.redelivered.Load()
	s.Acked = c.acked.Load()
	s.Progress = c.progress.Load()
	s.Nacked = c.nacked.Load()
	s.Connects = c.connects.Load()
	s.WebSocketConnects = c.webSocketConnects.Load()
	s.Messages = c.messages.Load()
	s.Closes = c.closes.Load()
	s.UnknownEvents = c.unknownEvents.Load()
	s.Panics = c.panics.Load()
	s.Malformed = c.malformed.Load()
	s.Dropped = c.dropped.Load() + c.natsDropped.Load()
	s.Abandoned = c.abandoned.Load()
	s.AckErrors = c.ackErrors.Load()
	s.MemoryReleases = c.memoryReleases.Load()
	t := &w.tasks
	s.Tasks = TaskStats{
		Queued: int(t.queued.Load()), Running: int(t.running.Load()),
		Taken: t.taken.Load(), Done: t.done.Load(), Failed: t.failed.Load(), Retried: t.retried.Load(),
		Refused: t.refused.Load(), Abandoned: t.abandoned.Load(), Expired: t.expired.Load(),
		Submitted: t.submitted.Load(), SubmitFailed: t.submitFailed.Load(), Finished: t.finished.Load(),
	}
	m := &w.msgs
	m.peers.mu.Lock()
	peers := len(m.peers.known)
	m.peers.mu.Unlock()
	s.WorkerMessages = MessageStats{Sent: m.sent.Load(), Received: m.received.Load(),
		Unknown: m.unknownSent.Load(), Peers: peers}
	return s
}
