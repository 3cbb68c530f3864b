package bus

import "strings"

// The subjects of tasks and of messages between workers (see
// docs/bus-protocol.md, "Tasks" and "Worker messages").

// Tasks is where submitters publish Task messages; task workers subscribe
// in the queue group TaskQueue, so each publication reaches one of them.
func (s Subjects) Tasks() string { return s.Prefix + ".task" }

// TaskQueue is the queue group that task workers subscribe to Tasks with.
func (s Subjects) TaskQueue() string { return s.Prefix + ".taskworkers" }

// TaskReplies is the reply subject of a submitter whose connection's inbox
// prefix is inbox (Options.InboxPrefix; "" means NATS's "_INBOX"): task
// workers publish TaskReply messages there. id is unique per submitter
// (a NATS NUID). Only the submitter's role may subscribe below its inbox;
// task workers may publish to "<prefix>.inbox.*.task.*".
func TaskReplies(inbox, id string) string {
	if inbox == "" {
		inbox = "_INBOX"
	}
	return strings.TrimSuffix(inbox, ".") + ".task." + id
}

// AllTaskReplies matches the TaskReplies subjects of every role's inbox:
// what task workers may publish to.
func (s Subjects) AllTaskReplies() string { return s.Prefix + ".inbox.*.task.*" }

// WorkerAnnounce is where worker processes publish WorkerInfo: when they
// start (Hello), every WorkerAnnounceInterval, and when they stop
// (Leaving).
func (s Subjects) WorkerAnnounce() string { return s.Prefix + ".wk.hb" }

// WorkerInbox is where WorkerMessage messages to the worker process id are
// published; that process alone subscribes to it (plain subscription).
func (s Subjects) WorkerInbox(id string) string { return s.Prefix + ".wk.msg." + Token(id) }

// AllWorkerInboxes matches every WorkerInbox subject.
func (s Subjects) AllWorkerInboxes() string { return s.Prefix + ".wk.msg.*" }

// WorkerBroadcast is where WorkerMessage messages to every worker process
// are published; every worker process subscribes (plain subscription), so
// each gets one copy.
func (s Subjects) WorkerBroadcast() string { return s.Prefix + ".wk.all" }

// TaskVersion is the version of the task messages.
const TaskVersion = 1

// Task is a task on its way to a task worker, on Subjects.Tasks with the
// submitter's TaskReplies subject as NATS reply subject.
type Task struct {
	// Version is TaskVersion.
	Version uint32
	// ID names the task; unique in the cluster (the submitter's id, a dot
	// and a sequence number).
	ID string
	// Payload is the task's data, opaque to gatework.
	Payload []byte
	// Attempt is 1 on the first run, more when the submitter published
	// the task again after the task worker that ran it was lost.
	Attempt uint32
	// Submitter names the submitter (a worker id, or an API client's).
	Submitter string
	// DeadlineUnixMs, when not 0, is when the submitter stops waiting
	// (Unix milliseconds): a task worker drops a task it gets after that.
	DeadlineUnixMs int64
}

// TaskReplyKind says what a TaskReply reports.
type TaskReplyKind int32

// The kinds of TaskReply.
const (
	TaskReplyUnknown TaskReplyKind = 0
	// TaskAccepted: the task worker took the task; progress follows
	// every progress interval until the result.
	TaskAccepted TaskReplyKind = 1
	// TaskProgress: the task is still waiting or running.
	TaskProgress TaskReplyKind = 2
	// TaskResult: the task ran; Result is its result, or Error the
	// handler's error. Final.
	TaskResult TaskReplyKind = 3
	// TaskBusy: the task worker had no room and did not take the task;
	// the submitter publishes it again after a back-off (same attempt).
	TaskBusy TaskReplyKind = 4
	// TaskAbandoned: the task worker took the task but stopped before it
	// finished (reload, shutdown); the submitter publishes it again
	// at once as the next attempt, or gives up after its last one.
	TaskAbandoned TaskReplyKind = 5
)

// TaskReply is what a task worker publishes on a task's reply subject.
type TaskReply struct {
	// ID is the task's id.
	ID string
	// Attempt is the attempt it answers.
	Attempt uint32
	// Kind says what happened.
	Kind TaskReplyKind
	// Result is the task's result (TaskResult).
	Result []byte
	// Error is the handler's error (TaskResult), or why the task was
	// refused or abandoned.
	Error string
	// Worker is the id of the task worker.
	Worker string
}

// WorkerInfo announces a worker process on Subjects.WorkerAnnounce.
type WorkerInfo struct {
	// ID is the worker's id, stable for the life of the process.
	ID string
	// PID is its process id.
	PID int32
	// Host is the host name of its machine.
	Host string
	// StartedUnixMs is when it started (Unix milliseconds).
	StartedUnixMs int64
	// Kind is "event" (serves client events, and tasks unless dedicated
	// task processes run) or "task" (serves tasks only).
	Kind string
	// Leaving says it is stopping: forget it at once.
	Leaving bool
	// Hello says it just started: every worker that did not know it
	// answers with its own WorkerInfo at once.
	Hello bool
	// IntervalMs is how often it announces itself; it is gone after
	// three intervals without one.
	IntervalMs uint32
	// NoClose says, for Kind "event", that the worker has no close
	// handler: close events are nothing to it. A gateway sends no close
	// events while every event worker it knows of says so.
	NoClose bool
	// NoWebSocketConnect says, for Kind "event", that the worker has no
	// WebSocket connect handler (OnWebSocketConnect): a gateway sends no
	// EventWebSocketConnect while every event worker it knows of says so,
	// except on a listener with upgrade_hook.
	NoWebSocketConnect bool
	// NoConnect says, for Kind "event", that the worker has no connect
	// handler (OnConnect): a gateway sends no EventConnect while every
	// event worker it knows of says so, except after an upgrade held for
	// upgrade_hook. An idle client then costs the workers nothing.
	NoConnect bool
}

// WorkerMessage is a message from one worker process to another
// (Subjects.WorkerInbox) or to all (Subjects.WorkerBroadcast).
type WorkerMessage struct {
	// From is the id of the sending worker.
	From string
	// To is the id of the receiving worker; "" for a broadcast.
	To string
	// Payload is the message, opaque to gatework.
	Payload []byte
}

// AppendTask appends the encoding of m to b.
func AppendTask(b []byte, m *Task) []byte {
	b = appendVarint(b, 1, uint64(m.Version))
	b = appendString(b, 2, m.ID)
	b = appendBytes(b, 3, m.Payload)
	b = appendVarint(b, 4, uint64(m.Attempt))
	b = appendString(b, 5, m.Submitter)
	b = appendVarint(b, 6, uint64(m.DeadlineUnixMs))
	return b
}

// DecodeTask decodes buf into m, which is reset first. Byte fields alias
// buf.
func DecodeTask(buf []byte, m *Task) error {
	*m = Task{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.u32(&m.Version)
		case 2:
			return f.str(&m.ID)
		case 3:
			return f.bytes(&m.Payload)
		case 4:
			return f.u32(&m.Attempt)
		case 5:
			return f.str(&m.Submitter)
		case 6:
			return f.i64(&m.DeadlineUnixMs)
		}
		return nil
	})
}

// AppendTaskReply appends the encoding of m to b.
func AppendTaskReply(b []byte, m *TaskReply) []byte {
	b = appendString(b, 1, m.ID)
	b = appendVarint(b, 2, uint64(m.Attempt))
	b = appendVarint(b, 3, uint64(m.Kind))
	b = appendBytes(b, 4, m.Result)
	b = appendString(b, 5, m.Error)
	b = appendString(b, 6, m.Worker)
	return b
}

// DecodeTaskReply decodes buf into m, which is reset first. Byte fields
// alias buf.
func DecodeTaskReply(buf []byte, m *TaskReply) error {
	*m = TaskReply{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.str(&m.ID)
		case 2:
			return f.u32(&m.Attempt)
		case 3:
			var v int32
			err := f.i32(&v)
			m.Kind = TaskReplyKind(v)
			return err
		case 4:
			return f.bytes(&m.Result)
		case 5:
			return f.str(&m.Error)
		case 6:
			return f.str(&m.Worker)
		}
		return nil
	})
}

// AppendWorkerInfo appends the encoding of m to b.
func AppendWorkerInfo(b []byte, m *WorkerInfo) []byte {
	b = appendString(b, 1, m.ID)
	b = appendVarint(b, 2, uint64(m.PID))
	b = appendString(b, 3, m.Host)
	b = appendVarint(b, 4, uint64(m.StartedUnixMs))
	b = appendString(b, 5, m.Kind)
	b = appendBool(b, 6, m.Leaving)
	b = appendBool(b, 7, m.Hello)
	b = appendVarint(b, 8, uint64(m.IntervalMs))
	b = appendBool(b, 110, m.NoClose)
	b = appendBool(b, 111, m.NoWebSocketConnect)
	b = appendBool(b, 112, m.NoConnect)
	return b
}

// DecodeWorkerInfo decodes buf into m, which is reset first.
func DecodeWorkerInfo(buf []byte, m *WorkerInfo) error {
	*m = WorkerInfo{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.str(&m.ID)
		case 2:
			return f.i32(&m.PID)
		case 3:
			return f.str(&m.Host)
		case 4:
			return f.i64(&m.StartedUnixMs)
		case 5:
			return f.str(&m.Kind)
		case 6:
			return f.boolean(&m.Leaving)
		case 7:
			return f.boolean(&m.Hello)
		case 8:
			return f.u32(&m.IntervalMs)
		case 110:
			return f.boolean(&m.NoClose)
		case 111:
			return f.boolean(&m.NoWebSocketConnect)
		case 112:
			return f.boolean(&m.NoConnect)
		}
		return nil
	})
}

// AppendWorkerMessage appends the encoding of m to b.
func AppendWorkerMessage(b []byte, m *WorkerMessage) []byte {
	b = appendString(b, 1, m.From)
	b = appendString(b, 2, m.To)
	b = appendBytes(b, 3, m.Payload)
	return b
}

// DecodeWorkerMessage decodes buf into m, which is reset first. Byte
// fields alias buf.
func DecodeWorkerMessage(buf []byte, m *WorkerMessage) error {
	*m = WorkerMessage{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.str(&m.From)
		case 2:
			return f.str(&m.To)
		case 3:
			return f.bytes(&m.Payload)
		}
		return nil
	})
}
