package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// TaskID names a task, unique in the cluster.
type TaskID = api.TaskID

// TaskResult is the outcome of a task, as OnFinish and TaskWaitMulti get it.
type TaskResult = api.TaskResult

// Kind says what a worker process serves.
type Kind string

// The kinds of worker.
const (
	// KindEvent serves client events (and tasks, when it has OnTask and
	// Config.NoTasks is false).
	KindEvent Kind = "event"
	// KindTask serves tasks only: a dedicated task process.
	KindTask Kind = "task"
)

// ErrNoTaskSubmitter: the worker's API cannot submit tasks (it was made
// with an API that is not an api.TaskSubmitter, or none).
var ErrNoTaskSubmitter = errors.New("worker: the worker's API cannot submit tasks")

// DefaultTaskConcurrency is Config.TaskConcurrency's default.
const DefaultTaskConcurrency = 16

// TaskContext is one attempt of one task, as handed to OnTask. It is valid
// during the handler call; its methods are safe for concurrent use.
type TaskContext struct {
	ctx       context.Context
	w         *Worker
	id        TaskID
	attempt   int
	submitter string
}

// Context is cancelled when the worker abandons the task (its Stop's
// deadline passed): the task will run again elsewhere.
func (t *TaskContext) Context() context.Context { return t.ctx }

// ID returns the task's id.
func (t *TaskContext) ID() TaskID { return t.id }

// Attempt returns 1 on the first run of the task, more when its submitter
// published it again because the task worker that ran it before was lost
// (it may have run, fully or partly).
func (t *TaskContext) Attempt() int { return t.attempt }

// Submitter returns the id of who submitted the task (a worker's id, or an
// API client's).
func (t *TaskContext) Submitter() string { return t.submitter }

// Worker returns the worker running the task.
func (t *TaskContext) Worker() *Worker { return t.w }

// API returns the cluster API (to push to clients from a task); maybe nil.
func (t *TaskContext) API() api.API { return t.w.api }

// taskJob is one task in hand of a task worker.
type taskJob struct {
	task    bus.Task
	reply   string
	started bool
	ctx     context.Context
	cancel  context.CancelFunc
}

// taskRunner is the task-worker side of a Worker: a queue subscription to
// the tasks, a fixed pool of TaskConcurrency goroutines and up to
// TaskBacklog tasks waiting for one. A task that finds no room is refused
// (TaskBusy): its submitter publishes it again after a back-off, and
// another task worker, or this one later, takes it.
type taskRunner struct {
	sub    *nats.Subscription
	queue  chan *taskJob
	wg     sync.WaitGroup // the pool
	inHand map[*taskJob]struct{}
	closed bool // the queue is closed: no task is taken any more

	queued, running                                    atomic.Int64
	taken, done, failed, retried, refused, abandoned   atomic.Uint64
	expired, submitted, finished, submitFailed, panics atomic.Uint64
}

// takesTasks reports whether w serves tasks.
func (w *Worker) takesTasks() bool {
	return w.h.OnTask != nil && (w.cfg.Kind == KindTask || !w.cfg.NoTasks)
}

// startTasks subscribes to the tasks in the task workers' queue group and
// starts the pool.
func (w *Worker) startTasks() error {
	t := &w.tasks
	t.queue = make(chan *taskJob, w.cfg.TaskConcurrency+w.cfg.TaskBacklog)
	t.inHand = make(map[*taskJob]struct{})
	sub, err := w.nc.QueueSubscribe(w.subj.Tasks(), w.subj.TaskQueue(), w.onTask)
	if err != nil {
		return fmt.Errorf("worker: subscribe %s: %w", w.subj.Tasks(), err)
	}
	t.sub = sub
	for range w.cfg.TaskConcurrency {
		t.wg.Add(1)
		go w.taskLoop()
	}
	return nil
}

// onTask takes a task when there is room, or refuses it.
func (w *Worker) onTask(m *nats.Msg) {
	j := &taskJob{reply: m.Reply}
	if err := bus.DecodeTask(m.Data, &j.task); err != nil || m.Reply == "" {
		w.stats.malformed.Add(1)
		w.log.Warn("malformed task dropped", "bytes", len(m.Data), "err", err)
		return
	}
	// The payload aliases the NATS message, which is ours.
	if d := j.task.DeadlineUnixMs; d != 0 && time.Now().UnixMilli() > d {
		w.tasks.expired.Add(1) // its submitter gave up on it already
		return
	}
	t := &w.tasks
	w.mu.Lock()
	if t.closed || len(t.inHand) >= w.cfg.TaskConcurrency+w.cfg.TaskBacklog {
		w.mu.Unlock()
		t.refused.Add(1)
		w.taskReply(j, bus.TaskBusy, nil, "busy")
		return
	}
	t.inHand[j] = struct{}{} // the room is ours; the queue comes after the accept
	j.ctx, j.cancel = context.WithCancel(w.ctx)
	w.mu.Unlock()
	t.taken.Add(1)
	if j.task.Attempt > 1 {
		t.retried.Add(1)
	}
	// The accept goes out before the task can start: a worker that dies
	// once the task has run at all must have told its submitter, or the
	// same attempt would run again elsewhere (twice with MaxAttempts 1).
	w.taskReply(j, bus.TaskAccepted, nil, "")
	w.mu.Lock()
	if _, ok := t.inHand[j]; ok { // else stopTaking handed it back (busy) meanwhile
		t.queued.Add(1)
		t.queue <- j // never blocks: len(queue) <= len(inHand) <= cap(queue); open while j is in hand unstarted
	}
	w.mu.Unlock()
}

// taskLoop is one goroutine of the task pool.
func (w *Worker) taskLoop() {
	defer w.tasks.wg.Done()
	for j := range w.tasks.queue {
		w.runTask(j)
	}
}

// runTask runs one task and sends its result.
func (w *Worker) runTask(j *taskJob) {
	t := &w.tasks
	w.mu.Lock()
	_, ok := t.inHand[j]
	if ok {
		j.started = true
	}
	w.mu.Unlock()
	t.queued.Add(-1)
	if !ok {
		return // handed back by Stop
	}
	t.running.Add(1)
	res, err := w.callTask(j)
	t.running.Add(-1)
	w.mu.Lock()
	_, ok = t.inHand[j]
	delete(t.inHand, j)
	w.mu.Unlock()
	j.cancel()
	if err != nil {
		t.failed.Add(1)
	} else {
		t.done.Add(1)
	}
	if !ok {
		return // abandoned by Stop: its submitter was told
	}
	msg := ""
	if err != nil {
		msg = err.Error()
		if msg == "" {
			msg = "error"
		}
	}
	w.taskReply(j, bus.TaskResult, res, msg)
}

// callTask calls OnTask, turning a panic into an error.
func (w *Worker) callTask(j *taskJob) (res []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			w.tasks.panics.Add(1)
			w.stats.panics.Add(1)
			w.log.Error("task handler panicked", "task", j.task.ID, "attempt", j.task.Attempt,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("task handler panicked: %v", r)
		}
	}()
	attempt := max(int(j.task.Attempt), 1)
	tc := &TaskContext{ctx: j.ctx, w: w, id: TaskID(j.task.ID), attempt: attempt, submitter: j.task.Submitter}
	return w.h.OnTask(tc, j.task.Payload[:len(j.task.Payload):len(j.task.Payload)])
}

// taskReply publishes a TaskReply for j.
func (w *Worker) taskReply(j *taskJob, kind bus.TaskReplyKind, result []byte, msg string) {
	b := bus.AppendTaskReply(nil, &bus.TaskReply{ID: j.task.ID, Attempt: j.task.Attempt, Kind: kind,
		Result: result, Error: msg, Worker: w.cfg.ID})
	if err := w.nc.Publish(j.reply, b); err != nil {
		w.stats.ackErrors.Add(1)
	}
}

// sendTaskProgress tells the submitters of the tasks in hand that they are
// still being worked on.
func (w *Worker) sendTaskProgress() {
	w.mu.Lock()
	js := make([]*taskJob, 0, len(w.tasks.inHand))
	for j := range w.tasks.inHand {
		js = append(js, j)
	}
	w.mu.Unlock()
	for _, j := range js {
		w.taskReply(j, bus.TaskProgress, nil, "")
	}
}

// stopTaking unsubscribes from the tasks and hands the tasks that wait for
// a goroutine back to their submitters (as busy: they publish them again
// at once, to another task worker, without spending an attempt).
func (w *Worker) stopTaking() {
	t := &w.tasks
	if t.sub == nil {
		return
	}
	_ = t.sub.Unsubscribe()
	w.mu.Lock()
	var back []*taskJob
	for j := range t.inHand {
		if !j.started {
			delete(t.inHand, j)
			back = append(back, j)
		}
	}
	if !t.closed {
		t.closed = true
		close(t.queue)
	}
	w.mu.Unlock()
	for _, j := range back {
		j.cancel()
		w.taskReply(j, bus.TaskBusy, nil, "worker stopping")
	}
}

// waitTasks waits for the running tasks to finish; when ctx expires first,
// it abandons them (their submitters publish them again as their next
// attempt) and returns how many.
func (w *Worker) waitTasks(ctx context.Context) int {
	t := &w.tasks
	if t.sub == nil {
		return 0
	}
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
	}
	w.mu.Lock()
	left := make([]*taskJob, 0, len(t.inHand))
	for j := range t.inHand {
		left = append(left, j)
	}
	clear(t.inHand)
	w.mu.Unlock()
	for _, j := range left {
		t.abandoned.Add(1)
		j.cancel()
		w.taskReply(j, bus.TaskAbandoned, nil, "worker stopped before the task finished")
	}
	return len(left)
}

// submitter returns the worker's task submitter.
func (w *Worker) submitter() (api.TaskSubmitter, error) {
	if s, ok := w.api.(api.TaskSubmitter); ok {
		return s, nil
	}
	return nil, ErrNoTaskSubmitter
}

// Task submits payload to a task worker of the cluster and returns at once
// (Swoole's task). The outcome goes to Handlers.OnFinish of this worker,
// on a goroutine of its own, when the result comes, the task fails or is
// given up (see docs/tasks.md); Stop waits for the outcomes of the tasks
// this worker submitted, within its deadline. A payload over the
// submitter's maximum fails with api.ErrTaskPayloadTooLarge before
// anything is sent.
func (w *Worker) Task(ctx context.Context, payload []byte) (TaskID, error) {
	s, err := w.submitter()
	if err != nil {
		return "", err
	}
	w.outstanding.Add(1)
	id, err := s.SubmitTask(ctx, payload, 0, func(r api.TaskResult) {
		go func() {
			defer w.outstanding.Done()
			w.tasks.finished.Add(1)
			w.callFinish(r)
		}()
	})
	if err != nil {
		w.outstanding.Done()
		w.tasks.submitFailed.Add(1)
		return "", err
	}
	w.tasks.submitted.Add(1)
	return id, nil
}

// callFinish runs OnFinish, recovering a panic.
func (w *Worker) callFinish(r api.TaskResult) {
	h := w.h.OnFinish
	if h == nil {
		if r.Err != nil {
			w.log.Warn("task failed (no OnFinish handler)", "task", r.ID, "err", r.Err)
		}
		return
	}
	defer func() {
		if p := recover(); p != nil {
			w.stats.panics.Add(1)
			w.log.Error("OnFinish panicked", "task", r.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	h(w, r)
}

// TaskWait submits payload and waits for its result for at most timeout
// (Swoole's taskwait). With no task worker up it waits the whole timeout,
// then fails with api.ErrNoTaskWorker. timeout 0 means the submitter's
// default (api.TaskConfig.Timeout).
func (w *Worker) TaskWait(ctx context.Context, payload []byte, timeout time.Duration) ([]byte, error) {
	s, err := w.submitter()
	if err != nil {
		return nil, err
	}
	w.tasks.submitted.Add(1)
	return s.TaskWait(ctx, payload, timeout)
}

// TaskWaitMulti submits every payload at once and waits until all have
// their outcome or timeout passed (Swoole's taskWaitMulti): the results
// are in the order of payloads, each with its own Err; a task without a
// result in time has an Err wrapping api.ErrTaskTimeout (or
// api.ErrNoTaskWorker), and the others are returned all the same.
func (w *Worker) TaskWaitMulti(ctx context.Context, payloads [][]byte, timeout time.Duration) []TaskResult {
	out := make([]TaskResult, len(payloads))
	s, err := w.submitter()
	if err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	var wg sync.WaitGroup
	for i, p := range payloads {
		wg.Add(1)
		_, err := s.SubmitTask(ctx, p, timeout, func(r api.TaskResult) {
			out[i] = r
			wg.Done()
		})
		if err != nil {
			out[i] = TaskResult{Err: err}
			wg.Done()
			continue
		}
		w.tasks.submitted.Add(1)
	}
	wg.Wait()
	return out
}

// TaskCo is TaskWaitMulti with Swoole's taskCo shape: the results and the
// errors in the order of payloads (results[i] is nil when errs[i] is not).
// In Go both run the tasks concurrently and block only the caller.
func (w *Worker) TaskCo(ctx context.Context, payloads [][]byte, timeout time.Duration) (results [][]byte, errs []error) {
	rs := w.TaskWaitMulti(ctx, payloads, timeout)
	results, errs = make([][]byte, len(rs)), make([]error, len(rs))
	for i, r := range rs {
		results[i], errs[i] = r.Result, r.Err
	}
	return results, errs
}

// Worker returns the worker running the handler (Swoole's $server): for
// Task, TaskWait, SendMessage, GetWorkerList and ID.
func (c *Context) Worker() *Worker { return c.w }
