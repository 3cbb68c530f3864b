package worker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// Errors returned by Start. Callers branch with errors.Is.
var (
	// ErrStarted: Start was called on a worker that is already running.
	ErrStarted = errors.New("worker: already started")
	// ErrStopped: Start was called on a worker that was stopped; a Worker
	// runs once, make a new one to run again.
	ErrStopped = errors.New("worker: stopped")
)

// Handlers are the user's code. Every field may be nil: the event is then
// counted and acknowledged without doing anything.
//
// Event handlers (OnConnect, OnWebSocketConnect, OnMessage, OnClose) run on
// the worker's pool: handlers of different clients run concurrently, the
// events of one client run one at a time and in order. A handler blocks its
// pool goroutine until it returns, and the client's next events wait for it.
// A handler that panics is recovered (see the package documentation).
type Handlers struct {
	// OnWorkerStart runs in Start, before the worker subscribes: no event
	// is handled before it returns. A panic makes Start fail.
	OnWorkerStart func(w *Worker)
	// OnWorkerStop runs in Stop once no more events will be handled (or
	// when Stop's ctx expired, while abandoned handlers may still run).
	OnWorkerStop func(w *Worker)
	// OnConnect runs when a client connected; for WebSocket after the
	// upgrade was answered (the client has its 101 already), and before
	// OnWebSocketConnect, except on a listener with upgrade_hook, where
	// OnWebSocketConnect comes first (before the 101) and OnConnect only
	// for an accepted client. Messages it sends reach the client after the
	// handshake.
	OnConnect func(c *Context)
	// OnWebSocketConnect runs after the WebSocket upgrade of a client, with
	// its HTTP request. c.Reject(status, reason) refuses the client: the
	// gateway closes it with WebSocket close code 4000+status. On a
	// listener with upgrade_hook it runs before the 101 instead
	// (c.BeforeUpgrade() is true): the gateway answers the upgrade when it
	// returns, and c.Reject(status, body) answers that HTTP status
	// (400-599) with body, so the client sees an ordinary HTTP error. r
	// belongs to the handler and may be retained.
	OnWebSocketConnect func(c *Context, r *Request)
	// OnMessage runs for every message of a client. msg belongs to the
	// handler: the worker never reads or reuses it afterwards, so the
	// handler may retain and modify it (appending to it reallocates).
	OnMessage func(c *Context, msg []byte)
	// OnClose runs when a client's connection closed. c still has the uid,
	// groups and session the client had; actions that send or change the
	// client have no effect any more. A worker without OnClose says so in
	// its announcements, and gateways send no close events while every
	// event worker they know of has none (docs/bus-protocol.md, "Close
	// events left out"): Stats.Closes then stays 0.
	OnClose func(c *Context)

	// OnTask runs a task (Swoole's onTask) that some worker or API client
	// submitted, on the worker's task pool (Config.TaskConcurrency at
	// once); its result, or its error, goes back to the submitter. A
	// worker with OnTask takes tasks unless Config.NoTasks (dedicated
	// task processes run them). Delivery is at least once: tc.Attempt()
	// is more than 1 when an earlier run's task worker was lost. A panic
	// is recovered and reported to the submitter as the task's error.
	OnTask func(tc *TaskContext, payload []byte) ([]byte, error)
	// OnFinish gets the outcome of a task this worker submitted with
	// Worker.Task (Swoole's onFinish), on a goroutine of its own: its
	// result, or an error (the handler's *api.TaskError, or the
	// submitter's api.ErrTaskTimeout, ErrNoTaskWorker, ErrTaskLost).
	OnFinish func(w *Worker, r TaskResult)
	// OnWorkerMessage gets a message another worker (or this one) sent
	// with SendMessage or SendMessageToAll (Swoole's onPipeMessage);
	// from is the sender's id. Messages sent to this worker and the
	// broadcasts are handled one at a time each, in arrival order, on
	// the NATS subscription's goroutine: a slow handler delays the next.
	// payload belongs to the handler.
	OnWorkerMessage func(w *Worker, from string, payload []byte)
	// OnDecodeError runs, instead of OnMessage, for a message that the
	// listener's codec could not decode, when the listener's decode_error
	// is "event" (with "close", the default, the gateway closes the
	// client instead: OnClose sees reason decode_error). msg is the
	// message as received (the handler's, as in OnMessage); err says why.
	OnDecodeError func(c *Context, msg []byte, err *DecodeError)
}

// Config configures a Worker. The zero value works.
type Config struct {
	// Prefix is the bus subject prefix; "" means bus.DefaultPrefix.
	Prefix string
	// Concurrency is how many batches run at once in this process, each
	// on a goroutine of a pool that grows on demand up to it (a goroutine
	// idle for two ProgressIntervals exits); 0 means 64 × GOMAXPROCS.
	Concurrency int
	// Backlog is how many further batches may wait in the worker for a
	// free goroutine (they are reported to the gateway as in progress);
	// 0 means 16 × Concurrency. A batch that arrives when the backlog is
	// full is refused with a busy nack and counted in Stats.Refused: its
	// gateway sends it again when there is room (one older than protocol
	// version 3 gets no answer: the batch is dropped, counted in
	// Stats.Dropped, and redelivered after its timeout). It is also the
	// NATS pending limit, in messages, of the worker's subscription.
	Backlog int
	// BacklogBytes bounds the payload bytes of the waiting batches the same
	// way (one batch is always accepted into an empty backlog); 0 means
	// 64 MiB. It is also the NATS pending limit, in bytes.
	BacklogBytes int
	// ProgressInterval is how often the gateway is told that a batch in
	// hand is still being worked on; 0 means 1s. It must stay well below
	// the gateway's redelivery timeout (about 3s): the first progress of a
	// batch is sent within 1.5 intervals of its arrival.
	ProgressInterval time.Duration
	// ID names the worker in logs and Acks; "" means a random id.
	ID string
	// ReleaseMemory, when true, hands the memory a burst of batches left
	// behind back to the operating system once the worker is idle again:
	// the first progress tick that finds no new batch since the previous
	// one, none in hand and every pool goroutine gone runs
	// debug.FreeOSMemory (a full collection, then the free heap is
	// released), at most once per 10 seconds, after emptying the
	// decoders' string table (bus.ForgetStrings), and logs where the
	// process's memory is at debug level (MemoryFigures). It acts on the whole
	// process, so it is meant for a process that only runs the worker
	// (gatework's worker processes set it); false, the zero value, leaves
	// the memory to the Go runtime, which keeps most of a burst's heap in
	// the process and returns it only slowly.
	ReleaseMemory bool
	// HeapFloor, when above 0, is how many bytes the heap may grow above
	// its live part before a collection while the collector is busy: when
	// it ran 4 times or more within a ProgressInterval, the worker raises
	// the process's GC percent so that the heap goal is about the live
	// heap plus HeapFloor (at most 5× the live heap, never below GOGC),
	// and puts GOGC back at the first tick without a new batch (before
	// ReleaseMemory, if set, returns the memory). A worker's live heap is
	// a few MiB, so at the default GOGC it is collected every few MiB of
	// allocation, a dozen times a second under load; the floor trades up
	// to HeapFloor bytes of memory while busy for those collections. It
	// acts on the whole process, like ReleaseMemory (gatework's worker
	// processes set it: worker.heap_floor); 0, the zero value, leaves
	// GOGC alone, and so does GOGC=off.
	HeapFloor int64
	// Kind is what the worker serves: "" or KindEvent, client events
	// (and tasks, see NoTasks); KindTask, tasks only (a dedicated task
	// process; Handlers.OnTask is then required).
	Kind Kind
	// NoTasks, when true, keeps an event worker from taking tasks even
	// though it has Handlers.OnTask (dedicated task processes run them:
	// worker.task_processes > 0). It can still submit tasks.
	NoTasks bool
	// TaskConcurrency is how many tasks run at once in this process;
	// 0 means DefaultTaskConcurrency (16).
	TaskConcurrency int
	// TaskBacklog is how many more tasks may wait in this process for
	// a free task goroutine (they are reported in progress to their
	// submitters); a task that arrives when the pool and the backlog are
	// full is refused as busy, and its submitter publishes it again after
	// a back-off (flow control: nothing is dropped). 0 means
	// TaskConcurrency.
	TaskBacklog int
	// MaxMessage bounds the payload of SendMessage and SendMessageToAll;
	// 0 means 512 KiB.
	MaxMessage int
	// Logger receives the worker's logs; nil means slog.Default().
	Logger *slog.Logger
}

// State is where a Worker is in its life.
type State int32

// The states of a Worker, in the order it goes through them.
const (
	StateNew      State = iota // made by New, not started
	StateRunning               // subscribed, taking batches
	StateDraining              // Stop unsubscribed (drain); finishing the batches in hand
	StateStopped               // Stop returned, or Start failed
)

var stateNames = [...]string{"new", "running", "draining", "stopped"}

// String returns the lower-case name of the state.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "unknown"
	}
	return stateNames[s]
}

// MarshalText returns the name of the state (JSON: "running").
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state's name; an unknown name is an error.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("worker: unknown state %q", b)
}

// Worker runs Handlers for the events that gateways publish on the bus.
// Its methods are safe for concurrent use.
//
// Lock order: Worker.life before Worker.mu. The NATS subscription's
// callback takes mu; mu is never held while calling user code.
type Worker struct {
	nc   *nats.Conn
	api  api.API
	cfg  Config
	h    Handlers
	subj bus.Subjects
	log  *slog.Logger

	ctx    context.Context // handed to handlers; cancelled when Stop ends
	cancel context.CancelFunc

	life      sync.Mutex    // serializes Start and the beginning of Stop
	stopped   chan struct{} // closed when the worker reached StateStopped
	stopErr   error         // Stop's result, read after stopped is closed
	subClosed chan struct{} // closed when the subscription will make no more callbacks
	monStop   chan struct{} // closed to stop the monitor goroutine
	monDone   chan struct{} // closed when the monitor goroutine returned

	mu           sync.Mutex // guards the fields below
	state        State
	sub          *nats.Subscription
	queue        chan *job          // waiting batches, capacity cfg.Backlog
	closed       bool               // queue closed: no batch is taken any more
	aborted      bool               // Stop's ctx expired: nothing more is acked
	inHand       map[*job]struct{}  // batches waiting or running, for progress
	waiting      int                // batches in queue or just taken out of it
	items        int                // queue entries (a multi message's batches are one), or just taken out
	msub         *nats.Subscription // multi messages (EventBatches)
	subsOpen     int                // event subscriptions not closed yet
	waitingBytes int                // their payload bytes
	running      int                // batches whose handlers run
	runners      int                // pool goroutines alive
	runnersDone  chan struct{}      // closed when closed and runners == 0
	doneClosed   bool               // runnersDone is closed

	stats       counters
	tasks       taskRunner     // the task-worker side; its inHand, closed under mu
	msgs        messenger      // worker messages and the worker list
	outstanding sync.WaitGroup // tasks submitted by Task whose OnFinish has not returned
}

// New makes a Worker that will serve events from nc for the cluster named by
// cfg.Prefix. It borrows nc: Stop does not close it, and nc must stay open
// until Stop returns. a is the cluster API handed to handlers by
// Context.API and Worker.API; it may be nil for a worker whose handlers only
// act on their own client. New does not touch the bus: call Start or Run.
func New(nc *nats.Conn, a api.API, cfg Config, h Handlers) (*Worker, error) {
	if nc == nil {
		return nil, errors.New("worker: nil NATS connection")
	}
	w, err := newWorker(a, cfg, h)
	if err != nil {
		return nil, err
	}
	w.nc = nc
	return w, nil
}

// newWorker applies the defaults of cfg, validates it and makes a Worker
// without a connection (benchmarks and fuzzing drive it directly).
func newWorker(a api.API, cfg Config, h Handlers) (*Worker, error) {
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	switch {
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("worker: negative Concurrency %d", cfg.Concurrency)
	case cfg.Backlog < 0:
		return nil, fmt.Errorf("worker: negative Backlog %d", cfg.Backlog)
	case cfg.BacklogBytes < 0:
		return nil, fmt.Errorf("worker: negative BacklogBytes %d", cfg.BacklogBytes)
	case cfg.ProgressInterval < 0:
		return nil, fmt.Errorf("worker: negative ProgressInterval %v", cfg.ProgressInterval)
	case cfg.TaskConcurrency < 0 || cfg.TaskBacklog < 0 || cfg.MaxMessage < 0:
		return nil, errors.New("worker: negative TaskConcurrency, TaskBacklog or MaxMessage")
	case cfg.Kind != "" && cfg.Kind != KindEvent && cfg.Kind != KindTask:
		return nil, fmt.Errorf("worker: unknown Kind %q", cfg.Kind)
	case cfg.Kind == KindTask && h.OnTask == nil:
		return nil, errors.New("worker: a task worker (Kind task) needs Handlers.OnTask")
	}
	if cfg.TaskConcurrency == 0 {
		cfg.TaskConcurrency = DefaultTaskConcurrency
	}
	if cfg.TaskBacklog == 0 {
		cfg.TaskBacklog = cfg.TaskConcurrency
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = 512 << 10
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 64 * runtime.GOMAXPROCS(0)
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = 16 * cfg.Concurrency
	}
	if cfg.BacklogBytes == 0 {
		cfg.BacklogBytes = 64 << 20
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = time.Second
	}
	if cfg.ID == "" {
		cfg.ID = "w-" + strings.ToLower(rand.Text()[:10])
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Worker{
		api:         a,
		cfg:         cfg,
		h:           h,
		subj:        subj,
		log:         cfg.Logger.With("worker", cfg.ID),
		ctx:         ctx,
		cancel:      cancel,
		stopped:     make(chan struct{}),
		subClosed:   make(chan struct{}),
		queue:       make(chan *job, cfg.Backlog),
		inHand:      make(map[*job]struct{}),
		runnersDone: make(chan struct{}),
		monStop:     make(chan struct{}),
		monDone:     make(chan struct{}),
	}
	w.initMessages()
	return w, nil
}

// ID returns the worker's id, as sent in its Acks.
func (w *Worker) ID() string { return w.cfg.ID }

// API returns the cluster API the worker was made with (maybe nil).
func (w *Worker) API() api.API { return w.api }

// Start calls OnWorkerStart, then subscribes to the events subject in the
// workers' queue group and returns once the NATS server has registered the
// subscription. It does not block for events: they are handled on the
// worker's own goroutines until Stop. A Worker starts once: a second call
// returns ErrStarted, a call after Stop ErrStopped. When Start fails after
// OnWorkerStart, OnWorkerStop is called and the worker is stopped.
func (w *Worker) Start() error {
	w.life.Lock()
	defer w.life.Unlock()
	w.mu.Lock()
	state := w.state
	w.mu.Unlock()
	switch state {
	case StateRunning, StateDraining:
		return ErrStarted
	case StateStopped:
		return ErrStopped
	}
	if err := w.callLifecycle("OnWorkerStart", w.h.OnWorkerStart); err != nil {
		w.finishStop(nil)
		return err
	}
	if err := w.subscribeAll(); err != nil {
		// Batches taken before the failure still run and are acked.
		w.mu.Lock()
		w.closeQueueLocked()
		w.mu.Unlock()
		w.stopTaking()
		w.stopMessages(false)
		err = errors.Join(err, w.callLifecycle("OnWorkerStop", w.h.OnWorkerStop))
		w.finishStop(nil)
		return err
	}
	go w.monitor()
	w.mu.Lock()
	w.state = StateRunning
	w.mu.Unlock()
	w.log.Info("worker started", "kind", w.kind(), "events", w.cfg.Kind != KindTask, "queue", w.subj.WorkersQueue(),
		"concurrency", w.cfg.Concurrency, "backlog", w.cfg.Backlog, "tasks", w.takesTasks(),
		"task_concurrency", w.cfg.TaskConcurrency)
	if w.cfg.ReleaseMemory {
		// The baseline of the figures logged after each release.
		w.logMemory("memory at start")
	}
	return nil
}

// subscribeAll subscribes to the worker messages, the events (unless a
// task worker) and the tasks (when it takes them).
func (w *Worker) subscribeAll() error {
	if err := w.startMessages(); err != nil {
		return err
	}
	if w.cfg.Kind == KindTask {
		close(w.subClosed) // no events subscription
	} else if err := w.subscribe(); err != nil {
		return err
	}
	if w.takesTasks() {
		if err := w.startTasks(); err != nil {
			return err
		}
		if err := w.nc.Flush(); err != nil {
			return fmt.Errorf("worker: subscribe %s: %w", w.subj.Tasks(), err)
		}
	}
	return nil
}

// subscribe joins the workers' queue group on the events subject and on
// the multi events subject (EventBatches), and waits until the server
// knows. subClosed is closed once both subscriptions are.
func (w *Worker) subscribe() error {
	w.mu.Lock()
	w.subsOpen = 2
	w.mu.Unlock()
	closed := func(string) {
		w.mu.Lock()
		w.subsOpen--
		last := w.subsOpen == 0
		w.mu.Unlock()
		if last {
			close(w.subClosed)
		}
	}
	var subs []*nats.Subscription
	fail := func(err error) error {
		w.mu.Lock()
		w.subsOpen = len(subs) // the others were never made
		w.mu.Unlock()
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		return err
	}
	for _, s := range []struct {
		subject string
		cb      nats.MsgHandler
	}{{w.subj.Events(), w.onMsg}, {w.subj.EventsMulti(), w.onMulti}} {
		sub, err := w.nc.QueueSubscribe(s.subject, w.subj.WorkersQueue(), s.cb)
		if err != nil {
			return fail(fmt.Errorf("worker: subscribe %s: %w", s.subject, err))
		}
		subs = append(subs, sub)
		sub.SetClosedHandler(closed)
		if err := sub.SetPendingLimits(w.cfg.Backlog, w.cfg.BacklogBytes); err != nil {
			return fail(fmt.Errorf("worker: pending limits: %w", err))
		}
	}
	if err := w.nc.Flush(); err != nil {
		return fail(fmt.Errorf("worker: subscribe %s: %w", w.subj.Events(), err))
	}
	w.mu.Lock()
	w.sub, w.msub = subs[0], subs[1]
	w.mu.Unlock()
	return nil
}

// Stop stops the worker gracefully: it drains the queue subscription (the
// NATS server gives new batches to other workers at once), finishes the
// batches in hand and acknowledges them, calls OnWorkerStop and returns.
//
// ctx bounds the wait. When it expires, the batches still in hand are
// abandoned: they are not acknowledged (the gateway redelivers them to
// another worker), the context of their handlers is cancelled, and Stop
// returns an error wrapping ctx.Err() after calling OnWorkerStop; abandoned
// handlers may still be running then. Stop does not close the NATS
// connection. It may be called more than once and concurrently: later calls
// wait for the first (or their own ctx) and return its result. Stop of a
// worker that never started returns nil at once. Stop waits for handlers:
// calling it from a handler stalls until ctx expires.
func (w *Worker) Stop(ctx context.Context) error {
	w.life.Lock()
	w.mu.Lock()
	state, sub, msub := w.state, w.sub, w.msub
	w.mu.Unlock()
	if state != StateRunning {
		if state == StateNew {
			w.finishStop(nil)
		}
		w.life.Unlock()
		select {
		case <-w.stopped:
			return w.stopErr
		case <-ctx.Done():
			return fmt.Errorf("worker: stop: %w", ctx.Err())
		}
	}
	var errs []error
	for _, sub := range []*nats.Subscription{sub, msub} {
		if sub == nil {
			continue
		}
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			// Cannot drain (the subscription is gone or the connection
			// closing): drop what NATS still holds, the gateway redelivers.
			errs = append(errs, fmt.Errorf("worker: drain: %w", err))
			_ = sub.Unsubscribe()
		}
	}
	// No new task; the waiting ones go back to their submitters.
	w.stopTaking()
	w.mu.Lock()
	w.state = StateDraining
	w.mu.Unlock()
	w.life.Unlock()
	w.log.Info("worker draining")

	finished := true
	select {
	case <-w.subClosed:
		w.mu.Lock()
		w.closeQueueLocked()
		w.mu.Unlock()
		select {
		case <-w.runnersDone:
		case <-ctx.Done():
			finished = false
		}
	case <-ctx.Done():
		finished = false
	}
	if !finished {
		n := w.abort(sub, msub)
		errs = append(errs, fmt.Errorf("worker: stop: %d batches abandoned: %w", n, ctx.Err()))
	}
	if n := w.waitTasks(ctx); n > 0 {
		errs = append(errs, fmt.Errorf("worker: stop: %d tasks abandoned (their submitters publish them again): %w", n, ctx.Err()))
	}
	if !w.waitOutstanding(ctx) {
		errs = append(errs, fmt.Errorf("worker: stop: outcomes of submitted tasks not all in: %w", ctx.Err()))
	}
	close(w.monStop)
	<-w.monDone
	w.stopMessages(true)
	errs = append(errs, w.callLifecycle("OnWorkerStop", w.h.OnWorkerStop))
	err := errors.Join(errs...)
	w.finishStop(err)
	return err
}

// abort gives up the batches in hand: nothing more is acknowledged or
// reported in progress, they are nacked, and handlers' contexts are
// cancelled. It returns how many batches were in hand.
func (w *Worker) abort(subs ...*nats.Subscription) int {
	w.mu.Lock()
	w.aborted = true
	n := len(w.inHand)
	abandoned := make([]*job, 0, n)
	for j := range w.inHand {
		abandoned = append(abandoned, j)
	}
	clear(w.inHand)
	w.closeQueueLocked()
	w.mu.Unlock()
	w.cancel()
	// Their gateways need not wait for a timeout: nacked, they go to
	// another worker at once.
	for _, j := range abandoned {
		w.nackAbandoned(j)
	}
	// Stop the drain: what NATS still holds for us is dropped, and the
	// gateway redelivers it.
	for _, sub := range subs {
		if sub != nil {
			_ = sub.Unsubscribe()
		}
	}
	return n
}

// closeQueueLocked stops taking batches; runners finish the queue and exit.
func (w *Worker) closeQueueLocked() {
	if w.closed {
		return
	}
	w.closed = true
	close(w.queue)
	w.checkRunnersDoneLocked()
}

// checkRunnersDoneLocked closes runnersDone once the queue is closed and
// every runner has exited.
func (w *Worker) checkRunnersDoneLocked() {
	if w.closed && w.runners == 0 && !w.doneClosed {
		w.doneClosed = true
		close(w.runnersDone)
	}
}

// finishStop moves the worker to StateStopped with Stop's result err.
func (w *Worker) finishStop(err error) {
	w.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == StateStopped {
		return
	}
	w.state = StateStopped
	w.stopErr = err
	close(w.stopped)
}

// Run starts the worker, waits until ctx is done, then stops it with a
// DefaultDrainTimeout bound on the drain. It returns nil after a graceful stop, the error of
// Start if the worker could not start, or the error of Stop.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultDrainTimeout)
	defer cancel()
	return w.Stop(sctx)
}

// waitOutstanding waits until the outcomes of the tasks this worker
// submitted with Task were handed to OnFinish, or ctx is done (false).
func (w *Worker) waitOutstanding(ctx context.Context) bool {
	done := make(chan struct{})
	go func() { w.outstanding.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// callLifecycle runs OnWorkerStart or OnWorkerStop, turning a panic into an
// error.
func (w *Worker) callLifecycle(name string, fn func(*Worker)) (err error) {
	if fn == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			w.stats.panics.Add(1)
			err = fmt.Errorf("worker: %s panicked: %v\n%s", name, r, debug.Stack())
		}
	}()
	fn(w)
	return nil
}
