package worker

import (
	"sync/atomic"

	"github.com/gatework/gatework/api"
)

// Stats are a worker's counters since New, and its gauges now. Counters
// only grow.
type Stats struct {
	State State `json:"state"`

	Batches     uint64 `json:"batches"`     // batches taken in hand (decoded and accepted)
	Redelivered uint64 `json:"redelivered"` // of those, batches a gateway had delivered before (Attempt > 1)
	Acked       uint64 `json:"acked"`       // final Acks sent
	Progress    uint64 `json:"progress"`    // progress Acks sent
	Nacked      uint64 `json:"nacked"`      // nacks sent: batches that did not decode, or that Stop abandoned

	// MultiMessages counts the multi messages (EventBatches: several
	// clients' batches in one bus message) taken, AckMessages the bus
	// messages that carried final acks (an Acks message counts once), and
	// Spilled the batches of multi messages handed back to the pool's
	// queue because their message ran longer than 1 ms.
	MultiMessages uint64 `json:"multi_messages"`
	AckMessages   uint64 `json:"ack_messages"`
	Spilled       uint64 `json:"spilled"`

	Connects          uint64 `json:"connects"` // events handled, by type
	WebSocketConnects uint64 `json:"websocket_connects"`
	Messages          uint64 `json:"messages"`
	Closes            uint64 `json:"closes"`
	UnknownEvents     uint64 `json:"unknown_events"` // events of a type this worker does not know: skipped

	Panics    uint64 `json:"panics"`     // handlers (and OnWorkerStart/Stop) that panicked
	Malformed uint64 `json:"malformed"`  // messages that did not decode as a batch (nacked), or had no reply subject (dropped)
	Dropped   uint64 `json:"dropped"`    // "slow worker": batches dropped because the NATS pending buffer was full, or the backlog with a gateway older than protocol version 3
	Refused   uint64 `json:"refused"`    // batches refused because the backlog was full (busy nacks: their gateway sends them again when there is room)
	Abandoned uint64 `json:"abandoned"`  // batches not acknowledged because Stop's ctx expired
	AckErrors uint64 `json:"ack_errors"` // Acks the NATS connection refused (closed, reconnect buffer full)

	// MemoryReleases counts the times the worker, idle after a burst,
	// returned its free memory to the operating system
	// (Config.ReleaseMemory).
	MemoryReleases uint64 `json:"memory_releases"`

	// Tasks are this process's task counters (see TaskStats).
	Tasks TaskStats `json:"tasks"`
	// WorkerMessages are its worker-message counters.
	WorkerMessages MessageStats `json:"worker_messages"`

	Busy    int `json:"busy"`    // batches whose handlers run now
	Waiting int `json:"waiting"` // batches in hand waiting for a free goroutine
	Pool    int `json:"pool"`    // goroutines in the pool now (at most Config.Concurrency)
}

// TaskStats are a worker's task counters since New, and its gauges now.
type TaskStats struct {
	// The task-worker side (Handlers.OnTask).
	Queued    int    `json:"queued"`    // tasks taken, waiting for a task goroutine now
	Running   int    `json:"running"`   // tasks whose handler runs now
	Taken     uint64 `json:"taken"`     // tasks taken (accepted)
	Done      uint64 `json:"done"`      // tasks whose handler returned a result
	Failed    uint64 `json:"failed"`    // tasks whose handler returned an error or panicked
	Retried   uint64 `json:"retried"`   // tasks taken on an attempt after the first
	Refused   uint64 `json:"refused"`   // tasks refused as busy (the pool and backlog were full; their submitters publish them again)
	Abandoned uint64 `json:"abandoned"` // tasks given up by Stop's deadline (their submitters publish them again)
	Expired   uint64 `json:"expired"`   // tasks dropped because their submitter's deadline had passed
	// The submitter side (Task, TaskWait, TaskWaitMulti, TaskCo).
	Submitted    uint64 `json:"submitted"`     // tasks submitted
	SubmitFailed uint64 `json:"submit_failed"` // Task calls that failed (payload too large, closed…)
	Finished     uint64 `json:"finished"`      // outcomes of Task handed to OnFinish (errors included)
	// Lost is the tasks this worker submitted that were given up because
	// the task worker of their last attempt was lost (api.ErrTaskLost),
	// as its API client counts them (0 with an API that does not).
	Lost uint64 `json:"lost"`
}

// MessageStats are a worker's worker-message counters since New.
type MessageStats struct {
	Sent     uint64 `json:"sent"`     // SendMessage and SendMessageToAll calls that published
	Received uint64 `json:"received"` // messages received (the broadcasts it sent itself included)
	Unknown  uint64 `json:"unknown"`  // SendMessage calls refused: unknown worker id
	Peers    int    `json:"peers"`    // other workers it knows now (GetWorkerList minus itself)
}

// counters are the atomic counters behind Stats.
type counters struct {
	batches, redelivered, acked, progress, nacked                          atomic.Uint64
	connects, webSocketConnects, messages, closes, unknownEvents           atomic.Uint64
	panics, malformed, dropped, natsDropped, abandoned, ackErrors, refused atomic.Uint64
	memoryReleases                                                         atomic.Uint64
	multiMsgs, ackMsgs, spilled                                            atomic.Uint64
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
	s.MultiMessages, s.AckMessages, s.Spilled = c.multiMsgs.Load(), c.ackMsgs.Load(), c.spilled.Load()
	s.Connects = c.connects.Load()
	s.WebSocketConnects = c.webSocketConnects.Load()
	s.Messages = c.messages.Load()
	s.Closes = c.closes.Load()
	s.UnknownEvents = c.unknownEvents.Load()
	s.Panics = c.panics.Load()
	s.Malformed = c.malformed.Load()
	s.Dropped = c.dropped.Load() + c.natsDropped.Load()
	s.Refused = c.refused.Load()
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
	if ts, ok := w.api.(interface{ TaskStats() api.TaskStats }); ok {
		s.Tasks.Lost = ts.TaskStats().Lost
	}
	m := &w.msgs
	m.peers.mu.Lock()
	peers := len(m.peers.known)
	m.peers.mu.Unlock()
	s.WorkerMessages = MessageStats{Sent: m.sent.Load(), Received: m.received.Load(),
		Unknown: m.unknownSent.Load(), Peers: peers}
	return s
}
