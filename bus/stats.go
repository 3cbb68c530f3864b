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
	EventsSent    uint64 `json:"events_sent"`     // event batches published to workers (first attempts)
	QueuedBytes   int64  `json:"queued_bytes"`    // outbound data queued and not yet written
	// Workers are the workers that acknowledged this gateway's event
	// batches (recently: see the gateway's worker table bound), and the
	// worker processes the gateway's node runs itself, by id.
	Workers []WorkerStats `json:"workers"`
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
}
