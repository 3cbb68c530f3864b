package bus

// GatewayStats is one gateway's answer to OpStats, carried as a JSON
// object in Reply.Stats: the gateway's process and traffic counters, and
// the workers it knows of. Counters only grow for the life of the gateway
// (a restarted gateway has a new id); a caller gets rates by taking the
// difference of two answers. Unknown keys must be ignored by readers, so
// that the object can grow.
type GatewayStats struct {
	Gateway       string `json:"gateway"`         // gateway id
	PID           int    `json:"pid"`             // process id of the gateway's process
	StartedUnixMs int64  `json:"started_unix_ms"` // when the gateway started
	NowUnixMs     int64  `json:"now_unix_ms"`     // when this answer was made (the gateway's clock)
	RSSBytes      int64  `json:"rss_bytes"`       // resident memory of the process; 0 where unknown
	Bus           string `json:"bus"`             // state of the gateway's NATS connection (CONNECTED, RECONNECTING…)
	Connections   int    `json:"connections"`     // open connections (handshake done)
	UIDs          int    `json:"uids"`            // distinct bound uids on this gateway
	Groups        int    `json:"groups"`          // groups with a member on this gateway
	MessagesIn    uint64 `json:"messages_in"`     // messages received from clients
	MessagesOut   uint64 `json:"messages_out"`    // messages queued to clients
	BytesIn       uint64 `json:"bytes_in"`        // payload bytes received from clients
	BytesOut      uint64 `json:"bytes_out"`       // bytes written to client sockets, framing included
	Accepted      uint64 `json:"accepted"`        // connections accepted since start
	Closed        uint64 `json:"closed"`          // connections closed since start, for any reason
	EventsSent    uint64 `json:"events_sent"`     // event batches published to workers (first attempts)
	EventsAcked   uint64 `json:"events_acked"`    // events in the batches workers acknowledged
	InFlight      int    `json:"in_flight"`       // event batches waiting for a worker's ack
	Redelivered   uint64 `json:"redelivered"`     // event batches published again (timeouts, nacks)
	QueuedBytes   int64  `json:"queued_bytes"`    // outbound data queued and not yet written
	// Dispatch is the gateway's dispatch mode: "client" (per-client
	// order) or "uid" (events of the clients bound to one uid handled
	// one batch at a time; docs/tasks.md, "Dispatch by uid").
	Dispatch string `json:"dispatch"`
	// WorkersBusy and WorkersIdle count the worker processes this
	// gateway's node runs whose state is known (see WorkerStats.State).
	WorkersBusy int `json:"workers_busy"`
	WorkersIdle int `json:"workers_idle"`
	// Tasks are the task counters of this gateway's node, when it runs
	// task workers (absent otherwise).
	Tasks *TaskStats `json:"tasks,omitempty"`
	// Workers are the workers that acknowledged this gateway's event
	// batches (recently: see the gateway's worker table bound), and the
	// worker processes the gateway's node runs itself, by id.
	Workers []WorkerStats `json:"workers"`
	// Processes are the user processes this gateway's node supervises
	// (empty when none).
	Processes []ProcessStats `json:"processes"`
}

// TaskStats are a node's task counters in GatewayStats.Tasks: the place
// for the task workers' figures (Swoole's tasking_num).
type TaskStats struct {
	Queued   uint64 `json:"queued"`    // tasks taken by the node's task workers, waiting for a free task goroutine
	InFlight uint64 `json:"in_flight"` // tasks a task worker is running
}

// ProcessStats is one user process (worker.Process) a gateway's node
// supervises.
type ProcessStats struct {
	// Gateway is the gateway whose node runs it; set in the merged
	// answer of api.Client.GetStats, empty in a gateway's own answer.
	Gateway       string `json:"gateway,omitempty"`
	Name          string `json:"name"`                // the process's name
	PID           int    `json:"pid"`                 // its current OS process
	StartedUnixMs int64  `json:"started_unix_ms"`     // when that process started
	RSSBytes      int64  `json:"rss_bytes,omitempty"` // its resident memory, when known
	Ready         bool   `json:"ready"`               // it is connected to the bus and running
	Restarts      int    `json:"restarts"`            // restarts after it exited on its own
	// Failing says it exited 5 times within a minute: its restarts are
	// backed off.
	Failing  bool   `json:"failing"`
	LastExit string `json:"last_exit,omitempty"` // its latest exit, if any
}

// WorkerStats is what a gateway knows of one worker. Process fields are
// zero for a worker that runs in a process the gateway's node does not
// supervise (another machine, another master).
type WorkerStats struct {
	ID            string `json:"id"`                        // worker id, as sent in its Acks
	Batches       uint64 `json:"batches"`                   // this gateway's event batches it acknowledged
	Events        uint64 `json:"events"`                    // events in those batches
	PID           int    `json:"pid,omitempty"`             // process id, when known
	StartedUnixMs int64  `json:"started_unix_ms,omitempty"` // when the process started, when known
	RSSBytes      int64  `json:"rss_bytes,omitempty"`       // resident memory, when known
	Bus           string `json:"bus,omitempty"`             // state of the worker's NATS connection, when known
	// Handled counts the events the worker handled for any gateway
	// (connects, messages, closes), when its process is known.
	Handled uint64 `json:"handled,omitempty"`
	// State is "busy" (handlers running now) or "idle", when its process
	// is known.
	State string `json:"state,omitempty"`
	// Busy is the number of batches whose handlers run now, when known.
	Busy int `json:"busy,omitempty"`
}
