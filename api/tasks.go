package api

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// TaskID names a task, unique in the cluster.
type TaskID string

// Task errors. Callers branch with errors.Is.
var (
	// ErrTaskPayloadTooLarge: the payload is over TaskConfig.MaxPayload;
	// nothing was sent.
	ErrTaskPayloadTooLarge = errors.New("api: task payload too large")
	// ErrNoTaskWorker: no task worker took the task before its deadline
	// (none is running, or all were busy the whole time).
	ErrNoTaskWorker = errors.New("api: no task worker took the task in time")
	// ErrTaskTimeout: a task worker took the task but its result did not
	// come before the deadline.
	ErrTaskTimeout = errors.New("api: task timed out")
	// ErrTaskLost: the task worker running the task's last attempt was
	// lost (it stopped answering, or stopped before it finished): the
	// submitter gave up on it.
	ErrTaskLost = errors.New("api: task lost with its task worker after its last attempt")
	// ErrTooManyTasks: TaskConfig.MaxPending tasks are already waiting
	// for their results.
	ErrTooManyTasks = errors.New("api: too many tasks pending")
)

// TaskError is the error a task's handler returned, as its task worker
// reported it.
type TaskError struct {
	Task    TaskID // the task
	Worker  string // the task worker that ran it
	Message string // the handler's error
}

// Error returns the handler's error with the task's id.
func (e *TaskError) Error() string {
	return fmt.Sprintf("task %s on %s: %s", e.Task, e.Worker, e.Message)
}

// TaskResult is the outcome of a task.
type TaskResult struct {
	// ID is the task's id.
	ID TaskID
	// Result is what the handler returned (nil on error).
	Result []byte
	// Err is nil when the handler succeeded; a *TaskError when it
	// returned an error; otherwise wraps ErrNoTaskWorker, ErrTaskTimeout,
	// ErrTaskLost or ErrClosed.
	Err error
	// Attempts is the attempts made (1 unless a task worker was lost).
	Attempts int
	// Worker is the id of the task worker that answered last ("" if none).
	Worker string
}

// TaskSubmitter submits tasks to the task workers of the cluster; Client
// implements it. Delivery is at least once (see docs/tasks.md).
type TaskSubmitter interface {
	// SubmitTask hands payload to a task worker and returns at once;
	// done, if not nil, is called once with the outcome, on a goroutine
	// of the submitter (it must not block). A task not finished within
	// timeout (0: TaskConfig.Timeout) fails with ErrTaskTimeout or
	// ErrNoTaskWorker.
	SubmitTask(ctx context.Context, payload []byte, timeout time.Duration, done func(TaskResult)) (TaskID, error)
	// TaskWait submits payload and waits for its result for at most
	// timeout (0: TaskConfig.Timeout) or until ctx is done.
	TaskWait(ctx context.Context, payload []byte, timeout time.Duration) ([]byte, error)
}

var _ TaskSubmitter = (*Client)(nil)

// Task defaults (TaskConfig).
const (
	DefaultTaskMaxPayload    = 512 << 10
	DefaultTaskMaxAttempts   = 2
	DefaultTaskRetryInterval = time.Second
	DefaultTaskLostAfter     = 5 * time.Second
	DefaultTaskTimeout       = 10 * time.Minute
	DefaultTaskMaxPending    = 100_000
)

// TaskConfig configures the task submitter of a Client. The zero value
// works.
type TaskConfig struct {
	// MaxPayload is the largest payload in bytes; a larger one fails with
	// ErrTaskPayloadTooLarge before anything is sent. 0 means
	// DefaultTaskMaxPayload (512 KiB; the NATS server's max_payload,
	// 1 MiB by default, bounds it too).
	MaxPayload int
	// MaxAttempts is how many times a task runs at most when the task
	// workers running it are lost (crash, kill, reload past its drain):
	// 2, the default for 0, retries it once; 1 never retries. A task that
	// a task worker refused because it was busy is not an attempt.
	MaxAttempts int
	// RetryInterval is how long the submitter waits for a task worker to
	// take a task before publishing it again (none may be running yet);
	// 0 means DefaultTaskRetryInterval (1s).
	RetryInterval time.Duration
	// LostAfter is how long a taken task may go without progress from
	// its task worker (which sends some every second) before the worker
	// is taken for lost and the task published again as the next
	// attempt; 0 means DefaultTaskLostAfter (5s).
	LostAfter time.Duration
	// Timeout bounds a task submitted without a timeout of its own
	// (Task, fire and forget): past it, the outcome is ErrTaskTimeout or
	// ErrNoTaskWorker. 0 means DefaultTaskTimeout (10 minutes).
	Timeout time.Duration
	// MaxPending bounds the tasks waiting for their results; a task over
	// it fails with ErrTooManyTasks. 0 means DefaultTaskMaxPending.
	MaxPending int
}

// withDefaults returns tc with its zero fields set to their defaults.
func (tc TaskConfig) withDefaults() (TaskConfig, error) {
	if tc.MaxPayload < 0 || tc.MaxAttempts < 0 || tc.RetryInterval < 0 || tc.LostAfter < 0 ||
		tc.Timeout < 0 || tc.MaxPending < 0 {
		return tc, fmt.Errorf("%w: negative task setting", ErrInvalidArgument)
	}
	if tc.MaxPayload == 0 {
		tc.MaxPayload = DefaultTaskMaxPayload
	}
	if tc.MaxAttempts == 0 {
		tc.MaxAttempts = DefaultTaskMaxAttempts
	}
	if tc.RetryInterval == 0 {
		tc.RetryInterval = DefaultTaskRetryInterval
	}
	if tc.LostAfter == 0 {
		tc.LostAfter = DefaultTaskLostAfter
	}
	if tc.Timeout == 0 {
		tc.Timeout = DefaultTaskTimeout
	}
	if tc.MaxPending == 0 {
		tc.MaxPending = DefaultTaskMaxPending
	}
	return tc, nil
}

// TaskStats are a submitter's task counters since the Client was made,
// and its gauge now.
type TaskStats struct {
	Submitted uint64 `json:"submitted"` // tasks accepted by SubmitTask/TaskWait
	Finished  uint64 `json:"finished"`  // tasks with a result (the handler's error included)
	Failed    uint64 `json:"failed"`    // tasks given up: timeout, no task worker, lost, closed
	Retried   uint64 `json:"retried"`   // attempts after the first (a task worker was lost)
	Lost      uint64 `json:"lost"`      // tasks given up because the task worker of their last attempt was lost (ErrTaskLost; counted in Failed too)
	Busy      uint64 `json:"busy"`      // refusals of busy task workers (published again)
	Pending   int    `json:"pending"`   // tasks waiting for their results now
}

// taskTick is how often the submitter looks for tasks to publish again
// or give up.
const taskTick = 50 * time.Millisecond

// Busy back-off bounds: a task a busy task worker refused is published
// again after a back-off that doubles from the first to the last.
const (
	busyBackoffMin = 10 * time.Millisecond
	busyBackoffMax = 500 * time.Millisecond
)

// submitter is the task state of a Client, made by the first task: it
// holds every task until its result (the retry state lives here).
type submitter struct {
	c     *Client
	cfg   TaskConfig
	id    string
	reply string
	sub   *nats.Subscription
	seq   atomic.Uint64
	stop  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	pending map[string]*pendingTask
	closed  bool

	submitted, finished, failed, retried, busy, lost atomic.Uint64
}

// pendingTask is one task waiting for its result.
type pendingTask struct {
	id       string
	payload  []byte
	attempt  uint32
	deadline time.Time
	taken    bool      // a task worker accepted the current attempt
	everTook bool      // some task worker accepted some attempt
	heard    time.Time // last accept or progress
	resend   time.Time // when to publish again while not taken
	backoff  time.Duration
	worker   string
	onDone   func(TaskResult)
}

// tasks returns the Client's submitter, making it on first use.
func (c *Client) tasks() (*submitter, error) {
	c.taskOnce.Do(func() {
		cfg, err := c.cfg.Tasks.withDefaults()
		if err != nil {
			c.taskErr = err
			return
		}
		s := &submitter{c: c, cfg: cfg, id: "s" + crand.Text()[:16], pending: make(map[string]*pendingTask),
			stop: make(chan struct{}), done: make(chan struct{})}
		s.reply = bus.TaskReplies(c.nc.Opts.InboxPrefix, crand.Text())
		sub, err := c.nc.Subscribe(s.reply, s.onReply)
		if err != nil {
			c.taskErr = fmt.Errorf("api: subscribe to task replies: %w", err)
			return
		}
		if err := c.nc.FlushTimeout(c.cfg.RequestTimeout); err != nil {
			_ = sub.Unsubscribe()
			c.taskErr = fmt.Errorf("api: subscribe to task replies: %w", err)
			return
		}
		s.sub = sub
		go s.loop()
		c.taskSub.Store(s)
	})
	if c.taskErr != nil {
		return nil, c.taskErr
	}
	return c.taskSub.Load(), nil
}

// TaskStats returns the counters of the Client's task submitter (zero
// before its first task).
func (c *Client) TaskStats() TaskStats {
	s := c.taskSub.Load()
	if s == nil {
		return TaskStats{}
	}
	s.mu.Lock()
	n := len(s.pending)
	s.mu.Unlock()
	return TaskStats{Submitted: s.submitted.Load(), Finished: s.finished.Load(), Failed: s.failed.Load(),
		Retried: s.retried.Load(), Busy: s.busy.Load(), Lost: s.lost.Load(), Pending: n}
}

// SubmitTask implements TaskSubmitter.
func (c *Client) SubmitTask(ctx context.Context, payload []byte, timeout time.Duration, done func(TaskResult)) (TaskID, error) {
	if err := c.checkOpen(ctx); err != nil {
		return "", err
	}
	if timeout < 0 {
		return "", fmt.Errorf("%w: negative task timeout", ErrInvalidArgument)
	}
	s, err := c.tasks()
	if err != nil {
		return "", err
	}
	if len(payload) > s.cfg.MaxPayload {
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrTaskPayloadTooLarge, len(payload), s.cfg.MaxPayload)
	}
	if timeout == 0 {
		timeout = s.cfg.Timeout
	}
	now := time.Now()
	p := &pendingTask{
		id: s.id + "." + strconv.FormatUint(s.seq.Add(1), 10), payload: payload, attempt: 1,
		deadline: now.Add(timeout), resend: now.Add(s.cfg.RetryInterval), backoff: busyBackoffMin, onDone: done,
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return "", ErrClosed
	case len(s.pending) >= s.cfg.MaxPending:
		s.mu.Unlock()
		return "", fmt.Errorf("%w: %d", ErrTooManyTasks, s.cfg.MaxPending)
	}
	s.pending[p.id] = p
	s.mu.Unlock()
	s.submitted.Add(1)
	if err := s.publish(p.id, payload, 1, p.deadline); err != nil {
		s.mu.Lock()
		delete(s.pending, p.id)
		s.mu.Unlock()
		s.submitted.Add(^uint64(0))
		return "", err
	}
	return TaskID(p.id), nil
}

// TaskWait implements TaskSubmitter.
func (c *Client) TaskWait(ctx context.Context, payload []byte, timeout time.Duration) ([]byte, error) {
	ch := make(chan TaskResult, 1)
	id, err := c.SubmitTask(ctx, payload, timeout, func(r TaskResult) { ch <- r })
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.Result, r.Err
	case <-ctx.Done():
		if s := c.taskSub.Load(); s != nil {
			s.forget(string(id))
		}
		return nil, fmt.Errorf("api: task %s: %w", id, ctx.Err())
	}
}

// publish sends one attempt of a task.
func (s *submitter) publish(id string, payload []byte, attempt uint32, deadline time.Time) error {
	b := bus.AppendTask(nil, &bus.Task{Version: bus.TaskVersion, ID: id, Payload: payload, Attempt: attempt,
		Submitter: s.id, DeadlineUnixMs: deadline.UnixMilli()})
	if err := s.c.nc.PublishMsg(&nats.Msg{Subject: s.c.subj.Tasks(), Reply: s.reply, Data: b}); err != nil {
		return s.c.busError(0, err)
	}
	return nil
}

// forget drops a task whose waiter went away.
func (s *submitter) forget(id string) {
	s.mu.Lock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if ok {
		s.failed.Add(1)
	}
}

// onReply handles a TaskReply from a task worker.
func (s *submitter) onReply(m *nats.Msg) {
	var r bus.TaskReply
	if err := bus.DecodeTaskReply(m.Data, &r); err != nil {
		s.c.log.Warn("malformed task reply dropped", "bytes", len(m.Data), "err", err)
		return
	}
	now := time.Now()
	s.mu.Lock()
	p := s.pending[r.ID]
	if p == nil {
		s.mu.Unlock()
		return // finished already (a late duplicate), or forgotten
	}
	var res *TaskResult
	var republish bool
	attempt := p.attempt
	switch r.Kind {
	case bus.TaskResult:
		// Any attempt's result will do: the task ran.
		delete(s.pending, r.ID)
		res = &TaskResult{ID: TaskID(r.ID), Result: r.Result, Attempts: int(p.attempt), Worker: r.Worker}
		if r.Error != "" {
			res.Result = nil
			res.Err = &TaskError{Task: TaskID(r.ID), Worker: r.Worker, Message: r.Error}
		}
		s.finished.Add(1)
	case bus.TaskAccepted, bus.TaskProgress:
		if r.Attempt == p.attempt {
			p.taken, p.everTook, p.heard, p.worker = true, true, now, r.Worker
		}
	case bus.TaskBusy:
		// Refused, or handed back unstarted by a stopping task worker:
		// the same attempt goes out again after a back-off.
		if r.Attempt == p.attempt {
			s.busy.Add(1)
			p.taken = false
			p.resend = now.Add(p.backoff/2 + rand.N(p.backoff/2+1))
			p.backoff = min(2*p.backoff, busyBackoffMax)
		}
	case bus.TaskAbandoned:
		if r.Attempt == p.attempt {
			res, republish = s.lostLocked(p, now, "abandoned by "+r.Worker)
			attempt = p.attempt
		}
	}
	s.mu.Unlock()
	s.after(p, attempt, res, republish)
}

// lostLocked handles the loss of the task worker running p's current
// attempt: p goes out as the next attempt, or is given up after its last.
func (s *submitter) lostLocked(p *pendingTask, now time.Time, why string) (*TaskResult, bool) {
	if int(p.attempt) >= s.cfg.MaxAttempts {
		delete(s.pending, p.id)
		s.failed.Add(1)
		s.lost.Add(1)
		s.c.log.Error("task given up: its task worker was lost on its last attempt", "task", p.id,
			"attempts", p.attempt, "worker", p.worker, "why", why)
		return &TaskResult{ID: TaskID(p.id), Attempts: int(p.attempt), Worker: p.worker,
			Err: fmt.Errorf("%w: task %s, %d attempts (%s)", ErrTaskLost, p.id, p.attempt, why)}, false
	}
	s.retried.Add(1)
	s.c.log.Warn("task published again: its task worker was lost", "task", p.id, "attempt", p.attempt+1,
		"worker", p.worker, "why", why)
	p.attempt++
	p.taken = false
	p.resend = now.Add(s.cfg.RetryInterval)
	p.backoff = busyBackoffMin
	return nil, true
}

// after publishes attempt of p again or reports its outcome, outside mu.
func (s *submitter) after(p *pendingTask, attempt uint32, res *TaskResult, republish bool) {
	if republish {
		if err := s.publish(p.id, p.payload, attempt, p.deadline); err != nil {
			s.c.log.Warn("task not published again; retrying", "task", p.id, "err", err)
		}
	}
	if res != nil && p.onDone != nil {
		p.onDone(*res)
	}
}

// loop publishes again the tasks no task worker took, detects lost task
// workers and gives up on tasks past their deadline, every taskTick.
func (s *submitter) loop() {
	defer close(s.done)
	t := time.NewTicker(taskTick)
	defer t.Stop()
	type action struct {
		p         *pendingTask
		res       *TaskResult
		republish bool
		attempt   uint32
	}
	var todo []action
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			todo = todo[:0]
			s.mu.Lock()
			for _, p := range s.pending {
				switch {
				case now.After(p.deadline):
					delete(s.pending, p.id)
					s.failed.Add(1)
					err := fmt.Errorf("%w: task %s", ErrNoTaskWorker, p.id)
					if p.everTook {
						err = fmt.Errorf("%w: task %s", ErrTaskTimeout, p.id)
					}
					todo = append(todo, action{p: p, res: &TaskResult{ID: TaskID(p.id), Attempts: int(p.attempt), Worker: p.worker, Err: err}})
				case p.taken && now.Sub(p.heard) > s.cfg.LostAfter:
					res, again := s.lostLocked(p, now, "no progress for "+s.cfg.LostAfter.String())
					todo = append(todo, action{p: p, res: res, republish: again, attempt: p.attempt})
				case !p.taken && !now.Before(p.resend):
					p.resend = now.Add(s.cfg.RetryInterval)
					todo = append(todo, action{p: p, republish: true, attempt: p.attempt})
				}
			}
			s.mu.Unlock()
			for _, a := range todo {
				s.after(a.p, a.attempt, a.res, a.republish)
			}
		}
	}
}

// close fails every pending task with ErrClosed and stops the loop.
func (s *submitter) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	left := s.pending
	s.pending = nil
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	_ = s.sub.Unsubscribe()
	for _, p := range left {
		s.failed.Add(1)
		if p.onDone != nil {
			p.onDone(TaskResult{ID: TaskID(p.id), Attempts: int(p.attempt), Worker: p.worker,
				Err: fmt.Errorf("api: task %s: %w", p.id, ErrClosed)})
		}
	}
	if len(left) > 0 {
		s.c.log.Warn("client closed with tasks pending: their outcome is lost to it", "tasks", len(left))
	}
}
