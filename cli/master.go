package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/master"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

// defaultShutdownTimeout applies when shutdown_timeout is 0.
const defaultShutdownTimeout = 15 * time.Second

// statsTimeout bounds the wait for the worker processes' stats in status.
const statsTimeout = 2 * time.Second

// reloadTimeout bounds a reload: new workers ready, old ones drained.
const reloadTimeout = 2 * time.Minute

// masterRun is the master of `start`: the node (bus, gateway, HTTP API)
// in this process and, with worker.processes > 0, the supervisor of the
// worker processes.
type masterRun struct {
	cfg  Config
	log  *slog.Logger
	nc   node.Config
	node *node.Node
	sup  *master.Supervisor // set by start when children is set
	// taskSup runs the dedicated task processes (worker.task_processes).
	taskSup *master.Supervisor
	// supRef is sup for the gateway's stats answers, which may come
	// before start sets sup.
	supRef atomic.Pointer[master.Supervisor]
	// workerIDPrefix starts the worker id of every child: the child adds
	// "-<pid>", so the master can name its children in stats answers.
	workerIDPrefix string
	// children's stats for the gateway's stats answers, refreshed in
	// the background while someone asks (see childStatsCached).
	childCache childStatsCache
	// taskSupRef and taskCache are supRef and childCache for the task
	// processes (taskSup).
	taskSupRef atomic.Pointer[master.Supervisor]
	taskCache  childStatsCache
	// children: the workers run in child processes (worker.processes > 0
	// and an app); otherwise in this process, if any.
	children bool
	started  time.Time
	// userProcs are the app's user processes; procs their supervisors,
	// appended by startProcesses (guarded by procsMu: the gateway's stats
	// answers read them).
	userProcs []worker.Process
	procsMu   sync.Mutex
	procs     []userProc
	// gw are the gateway processes (gateway.processes above 1); nil when
	// the gateway runs in this process.
	gw *gatewayProcs

	// The previous status sample, for rates.
	rateMu    sync.Mutex
	lastStats gateway.Stats
	lastAt    time.Time
}

// rates returns the gateway's traffic per second since the previous call
// (nil on the first), and remembers st for the next.
func (m *masterRun) rates(st gateway.Stats, now time.Time) *trafficRates {
	m.rateMu.Lock()
	defer m.rateMu.Unlock()
	prev, at := m.lastStats, m.lastAt
	m.lastStats, m.lastAt = st, now
	secs := now.Sub(at).Seconds()
	if at.IsZero() || secs <= 0 {
		return nil
	}
	per := func(cur, old uint64) float64 {
		if cur < old {
			return 0
		}
		return float64(cur-old) / secs
	}
	return &trafficRates{
		Seconds:     secs,
		MessagesIn:  per(st.MessagesIn, prev.MessagesIn),
		MessagesOut: per(st.MessagesOut, prev.MessagesOut),
		BytesIn:     per(st.BytesIn, prev.BytesIn),
		BytesOut:    per(st.BytesOut, prev.BytesOut),
	}
}

// newMasterRun prepares the master for the validated c.
func newMasterRun(c Config, log *slog.Logger, apps []App) (*masterRun, error) {
	nc, err := c.NodeConfig(log, apps...)
	if err != nil {
		return nil, err
	}
	m := &masterRun{cfg: c, log: log, nc: nc, workerIDPrefix: "w-" + strings.ToLower(rand.Text()[:8])}
	if c.gatewayProcesses() > 0 {
		// The gateways run in child processes: the master keeps the bus,
		// the HTTP API and the supervisors.
		nc.NoGateway = true
		if nc.NATS.URL == "" && nc.NATS.Listen == "" {
			nc.NATS.Listen = "127.0.0.1:0"
		}
		if nc.NATS.URL != "" && nc.NATS.Role == "" {
			nc.NATS.Role = bus.RoleNode // as with a gateway in this process
		}
		m.nc = nc
	}
	if c.Worker.Processes > 0 && c.Worker.App != appNone && c.Worker.Webhook.URL == "" {
		// Workers run in child processes: the embedded NATS listens on a
		// loopback port; they log in as its generated worker user.
		nc.Worker.Handlers = nil
		if nc.NATS.URL == "" && nc.NATS.Listen == "" {
			nc.NATS.Listen = "127.0.0.1:0"
		}
		nc.Gateway.LocalWorkers = m.localWorkers
		nc.Gateway.LocalTasks = m.localTasks
		m.nc = nc
		m.children = true
	}
	if c.Worker.App != appNone && c.Worker.Webhook.URL == "" {
		for _, a := range apps {
			if a.Name == c.Worker.App {
				m.userProcs = a.Processes
			}
		}
	}
	if len(m.userProcs) > 0 {
		// User processes run in child processes too: they reach the
		// embedded NATS on a loopback port as its worker user.
		if m.nc.NATS.URL == "" && m.nc.NATS.Listen == "" {
			m.nc.NATS.Listen = "127.0.0.1:0"
		}
		m.nc.Gateway.LocalProcesses = m.localProcesses
	}
	return m, nil
}

// localWorkers names the worker processes for the gateway's stats
// answers: their ids (workerIDPrefix-<pid>), pids, start times, memory,
// and the bus state and events handled that the children last reported.
// It reads the supervisor's table, /proc and a cache, never waits for the
// children, so it is quick enough for the gateway's bus goroutine.
func (m *masterRun) localWorkers() []bus.WorkerStats {
	sup := m.supRef.Load()
	if sup == nil {
		return nil
	}
	ps, _ := sup.Status()
	reported := m.childCache.get(sup, time.Now())
	out := make([]bus.WorkerStats, 0, len(ps))
	for _, p := range ps {
		rss, _ := master.RSS(p.PID)
		w := bus.WorkerStats{
			ID:            childWorkerID(m.workerIDPrefix, p.PID),
			PID:           p.PID,
			StartedUnixMs: p.Started.UnixMilli(),
			RSSBytes:      rss,
		}
		if cs, ok := reported[p.PID]; ok {
			w.Bus = cs.Bus
			w.Handled = cs.Worker.Connects + cs.Worker.Messages + cs.Worker.Closes
			w.Busy, w.State = cs.Worker.Busy, gateway.WorkerIdle
			if cs.Worker.Busy > 0 {
				w.State = gateway.WorkerBusy
			}
		}
		out = append(out, w)
	}
	return out
}

// localTasks sums the task counters the worker and task processes last
// reported (cached as for localWorkers: it never waits for them).
func (m *masterRun) localTasks() *bus.TaskStats {
	var t bus.TaskStats
	add := func(byPID map[int]childStats) {
		for _, cs := range byPID {
			t.Queued += uint64(cs.Worker.Tasks.Queued)
			t.InFlight += uint64(cs.Worker.Tasks.Running)
		}
	}
	now := time.Now()
	if sup := m.supRef.Load(); sup != nil {
		add(m.childCache.get(sup, now))
	}
	if tsup := m.taskSupRef.Load(); tsup != nil {
		add(m.taskCache.get(tsup, now))
	}
	return &t
}

// childStatsMaxAge is how old the cached children's stats may be before a
// read starts a refresh.
const childStatsMaxAge = 2 * time.Second

// childStatsCache holds the children's last stats answers (Supervisor.Stats
// asks them over their pipes, which takes up to statsTimeout). A read
// returns what it holds at once and, when that is older than
// childStatsMaxAge, starts one refresh in the background: the children are
// asked only while someone reads (the console is open), at most every
// childStatsMaxAge.
type childStatsCache struct {
	mu         sync.Mutex
	at         time.Time
	refreshing bool
	byPID      map[int]childStats // replaced whole, never changed: readers may keep it
	wg         sync.WaitGroup     // the refresh in flight
}

func (c *childStatsCache) get(sup *master.Supervisor, now time.Time) map[int]childStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.refreshing && now.Sub(c.at) >= childStatsMaxAge {
		c.refreshing = true
		c.wg.Add(1)
		go c.refresh(sup)
	}
	return c.byPID
}

// refresh asks the children for their stats (bounded by statsTimeout).
func (c *childStatsCache) refresh(sup *master.Supervisor) {
	defer c.wg.Done()
	raw := sup.Stats(statsTimeout)
	byPID := make(map[int]childStats, len(raw))
	for pid, js := range raw {
		var cs childStats
		if json.Unmarshal(js, &cs) == nil {
			byPID[pid] = cs
		}
	}
	c.mu.Lock()
	c.byPID, c.at, c.refreshing = byPID, time.Now(), false
	c.mu.Unlock()
}

// childWorkerID is the worker id of the child with pid of a master whose
// children's ids start with prefix.
func childWorkerID(prefix string, pid int) string { return prefix + "-" + strconv.Itoa(pid) }

// processes returns how many worker processes the master runs.
func (m *masterRun) processes() int {
	if !m.children {
		return 0
	}
	return m.cfg.Worker.Processes
}

// taskProcesses returns how many dedicated task processes the master runs.
func (m *masterRun) taskProcesses() int {
	if !m.children {
		return 0
	}
	return m.cfg.Worker.TaskProcesses
}

// start starts the node, then the worker (and task) processes, then the
// gateway processes (gateway.processes above 1), then the user processes,
// and returns once they are all ready. Children's logs go to stderr.
func (m *masterRun) start(ctx context.Context, stderr io.Writer) error {
	if n := masterGOMAXPROCS(m.cfg, m.children, os.Getenv("GOMAXPROCS") != "", runtime.NumCPU()); n > 0 {
		// Before the node starts: the gateway's shards and pollers follow it.
		runtime.GOMAXPROCS(n)
		m.log.Info("gateway on fewer threads of Go code than CPUs", "gomaxprocs", n, "cpus", runtime.NumCPU())
	}
	n, err := node.Start(ctx, m.nc)
	if err != nil {
		return err
	}
	m.node = n
	m.started = time.Now()
	fail := func(err error) error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if m.sup != nil {
			_ = m.sup.Stop(sctx)
		}
		if m.taskSup != nil {
			_ = m.taskSup.Stop(sctx)
		}
		if m.gw != nil {
			if m.gw.sup != nil {
				_ = m.gw.sup.Stop(sctx)
			}
			m.gw.close()
		}
		_ = n.Shutdown(sctx)
		return err
	}
	if m.children {
		if err := m.startWorkers(ctx, stderr); err != nil {
			return fail(err)
		}
	}
	if m.cfg.gatewayProcesses() > 0 {
		// After the workers: the first clients find them.
		if err := m.startGateways(ctx, stderr); err != nil {
			return fail(err)
		}
	}
	if len(m.userProcs) > 0 {
		// User processes start once the node and its workers serve.
		exe, err := master.ProgramPath()
		if err != nil {
			return fail(fmt.Errorf("user processes: %w", err))
		}
		b, err := json.Marshal(m.childSpec())
		if err != nil {
			return fail(fmt.Errorf("user processes: %w", err))
		}
		if err := m.startProcesses(ctx, exe, childEnv(envChild), b, stderr); err != nil {
			m.stopProcesses(ctx)
			return fail(err)
		}
	}
	return nil
}

// startWorkers starts the worker processes and returns once they are all
// ready.
func (m *masterRun) startWorkers(ctx context.Context, stderr io.Writer) error {
	fail := func(err error) error { return err }
	exe, err := master.ProgramPath()
	if err != nil {
		return fail(fmt.Errorf("worker processes: %w", err))
	}
	spec := m.childSpec()
	b, err := json.Marshal(spec)
	if err != nil {
		return fail(fmt.Errorf("worker processes: %w", err))
	}
	// The secrets of the configuration stay out of the children's
	// environment: they get what they need, the bus, on stdin.
	env := childEnv(envChild)
	if n := workerGOMAXPROCS(m.cfg.Worker, os.Getenv("GOMAXPROCS") != "", runtime.NumCPU()); n > 0 {
		// Last: exec keeps the last of duplicate keys.
		env = append(env, "GOMAXPROCS="+strconv.Itoa(n))
	}
	sup, err := master.New(master.Config{
		Path:        exe,
		Args:        []string{"worker", "--app", m.cfg.Worker.App},
		Env:         env,
		Handoff:     b,
		Processes:   m.cfg.Worker.Processes,
		StopTimeout: m.shutdownTimeout(),
		Stderr:      stderr,
		Logger:      m.log.With("component", "master"),
	})
	if err != nil {
		return fail(err)
	}
	m.sup = sup
	m.supRef.Store(sup)
	if err := sup.Start(ctx); err != nil {
		return fail(fmt.Errorf("worker processes: %w", err))
	}
	if n := m.cfg.Worker.TaskProcesses; n > 0 {
		spec.Kind, spec.NoTasks = string(worker.KindTask), false
		tb, err := json.Marshal(spec)
		if err != nil {
			return fail(fmt.Errorf("task processes: %w", err))
		}
		tsup, err := master.New(master.Config{
			Path: exe, Args: []string{"worker", "--app", m.cfg.Worker.App}, Env: env, Handoff: tb,
			Processes: n, StopTimeout: m.shutdownTimeout(), Stderr: stderr,
			Logger: m.log.With("component", "master", "kind", "task"),
		})
		if err != nil {
			return fail(fmt.Errorf("task processes: %w", err))
		}
		m.taskSup = tsup
		m.taskSupRef.Store(tsup)
		if err := tsup.Start(ctx); err != nil {
			return fail(fmt.Errorf("task processes: %w", err))
		}
	}
	return nil
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if len(s) >= len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}

// childSpec is what the worker processes get on their standard input:
// the bus as node.WorkerOptions gives it (the embedded NATS's worker user,
// or the external NATS's credentials) and the settings.
func (m *masterRun) childSpec() childSpec {
	c := m.cfg
	o := m.node.WorkerOptions("")
	return childSpec{
		busCreds:       credsOf(o),
		InboxPrefix:    o.InboxPrefix,
		Prefix:         c.Prefix,
		Concurrency:    workerConcurrency(c.Worker, os.Getenv("GOMAXPROCS") != "", runtime.NumCPU()),
		QueryTimeout:   time.Duration(c.API.QueryTimeout),
		ReqTimeout:     time.Duration(c.API.RequestTimeout),
		Log:            c.Log,
		WorkerIDPrefix: m.workerIDPrefix,
		// With dedicated task processes, the worker processes only
		// submit tasks.
		NoTasks:         c.Worker.TaskProcesses > 0,
		TaskConcurrency: c.Worker.TaskConcurrency,
		TaskMaxAttempts: c.Worker.TaskMaxAttempts,
		TaskMaxPayload:  c.Worker.TaskMaxPayload,
		HeapFloor:       c.Worker.HeapFloor,
	}
}

func (m *masterRun) shutdownTimeout() time.Duration {
	if t := time.Duration(m.cfg.ShutdownTimeout); t > 0 {
		return t
	}
	return defaultShutdownTimeout
}

// reload replaces the worker processes, then the user processes (see
// master.Supervisor.Reload).
func (m *masterRun) reload(ctx context.Context) error {
	if m.sup == nil && len(m.procList()) == 0 {
		err := errors.New("reload: the worker runs inside the master (worker.processes is 0): nothing to reload")
		m.log.Error("reload refused", "err", err)
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	if m.sup != nil {
		if err := m.sup.Reload(ctx); err != nil {
			return err
		}
	}
	if m.taskSup != nil {
		// Tasks in flight on the old task processes finish there, or
		// are abandoned and published again by their submitters.
		if err := m.taskSup.Reload(ctx); err != nil {
			return err
		}
	}
	return m.reloadProcesses(ctx)
}

// shutdown stops the node gracefully: the gateway first (its close events
// still reach the workers), then the worker processes, then the rest of
// the node, all within shutdown_timeout.
func (m *masterRun) shutdown(ctx context.Context) error {
	timeout := m.shutdownTimeout()
	m.log.Info("shutting down", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var errs []error
	if m.gw != nil {
		// The gateways first: their close events reach the workers,
		// which are still up.
		if err := m.gw.sup.Stop(sctx); err != nil {
			errs = append(errs, err)
		}
		m.gw.close()
	}
	// User processes next: they may push to clients until they stop.
	m.stopProcesses(sctx)
	if m.sup != nil {
		// Errors of the gateway are reported again by node.Shutdown.
		if gw := m.node.Gateway(); gw != nil {
			_ = gw.Shutdown(sctx)
		}
		if err := m.sup.Stop(sctx); err != nil {
			errs = append(errs, err)
		}
		if m.taskSup != nil {
			if err := m.taskSup.Stop(sctx); err != nil {
				errs = append(errs, err)
			}
		}
		m.childCache.wg.Wait() // bounded by statsTimeout
		m.taskCache.wg.Wait()
	}
	if err := m.node.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shutdown: %w", err))
	}
	return errors.Join(errs...)
}

// control answers a request of the control socket.
func (m *masterRun) control(ctx context.Context, req master.ControlRequest) master.ControlResponse {
	switch req.Cmd {
	case "status":
		b, err := json.Marshal(m.status())
		if err != nil {
			return master.ControlResponse{Error: err.Error()}
		}
		return master.ControlResponse{OK: true, Status: b}
	case "reload":
		if err := m.reload(ctx); err != nil {
			return master.ControlResponse{Error: err.Error()}
		}
		return master.ControlResponse{OK: true}
	default:
		return master.ControlResponse{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
	}
}

// status describes every process of the node.
func (m *masterRun) status() (rep statusReport) {
	now := time.Now()
	self := os.Getpid()
	rss, _ := master.RSS(self)
	up := now.Sub(m.started)
	proc := func(role string, pid int, up time.Duration, rss int64) processStatus {
		return processStatus{Role: role, PID: pid, Uptime: up.Truncate(time.Second).String(),
			UptimeSeconds: up.Seconds(), RSSBytes: rss}
	}
	rep = statusReport{Version: version(), App: m.cfg.Worker.App}
	rep.Processes = append(rep.Processes, proc("master", self, up, rss))
	if g := m.node.Gateway(); g != nil {
		st := g.Stats()
		gw := proc("gateway", self, up, rss)
		gw.Connections, gw.Gateway = &st.Connections, &st
		gw.Rates = m.rates(st, now)
		gw.Bus = m.node.BusStatus()
		rep.Processes = append(rep.Processes, gw)
	} else if m.gw != nil {
		m.gatewayStatus(&rep, now)
	}
	defer func() {
		rep.Processes = append(rep.Processes, m.processStatuses(now)...)
		var submitted api.TaskStats
		if a := m.node.API(); a != nil {
			submitted = a.TaskStats()
		}
		rep.Tasks = sumTasks(rep.Processes, submitted)
	}()
	if m.sup == nil {
		if wk := m.node.Worker(); wk != nil {
			w := proc("worker", self, up, rss)
			ws := wk.Stats()
			w.Worker = &ws
			rep.Processes = append(rep.Processes, w)
		}
		return rep
	}
	stats := m.sup.Stats(statsTimeout)
	ps, counters := m.sup.Status()
	rep.Workers = &counters
	roles := make(map[int]string, len(ps))
	if m.taskSup != nil {
		for pid, js := range m.taskSup.Stats(statsTimeout) {
			stats[pid] = js
		}
		tps, _ := m.taskSup.Status()
		for _, p := range tps {
			roles[p.PID] = "task"
		}
		ps = append(ps, tps...)
	}
	for _, p := range ps {
		r, _ := master.RSS(p.PID)
		role := roles[p.PID]
		if role == "" {
			role = "worker"
		}
		w := proc(role, p.PID, now.Sub(p.Started), r)
		w.Slot, w.Generation, w.Ready, w.Restarts = &p.Slot, &p.Generation, &p.Ready, &p.Restarts
		var cs childStats
		if js, ok := stats[p.PID]; ok && json.Unmarshal(js, &cs) == nil {
			w.Worker, w.Bus = &cs.Worker, cs.Bus
		}
		rep.Processes = append(rep.Processes, w)
	}
	return rep
}

// workerGOMAXPROCS returns the GOMAXPROCS to give the worker (and task)
// processes, 0 for none (their environment decides): w.GOMAXPROCS when
// set, else 1 when there are at least as many worker processes as cpus
// and the master's environment does not set GOMAXPROCS (envSet). On a
// node whose worker processes cover the cores, one thread of Go code each
// saves the scheduler's spinning and futex hand-offs between threads that
// would only take cores from the master and the other workers.
func workerGOMAXPROCS(w WorkerConfig, envSet bool, cpus int) int {
	switch {
	case w.GOMAXPROCS > 0:
		return w.GOMAXPROCS
	case !envSet && w.Processes >= cpus:
		return 1
	}
	return 0
}

// masterGOMAXPROCS returns the GOMAXPROCS the master sets for itself
// before it starts the node, or 0 to leave Go's default. Only when the
// gateway runs inside the master (gateway.processes 1; gateway processes
// get gateway.gomaxprocs in their environment): gateway.gomaxprocs when
// set; else, when the node runs worker processes (children) and the
// environment has no GOMAXPROCS, half the CPUs, at least 1. The worker
// processes already run on every core; with as many threads of Go code as
// cores in the master too, each event and each acknowledgement that goes
// from one of its goroutines to another (poller, publisher, the bus
// client, the shards) wakes an idle thread, and the publisher wakes for a
// few events at a time: on 2 CPUs, one thread halved the node's CPU per
// echo round trip with a slow client and cut it by a fifth with a fast
// one, at the same round trips/s; fan-out to large groups at the top of
// its rate does better on every CPU (docs/benchmarks.md, "W3 echo,
// round 8").
func masterGOMAXPROCS(c Config, children, envSet bool, cpus int) int {
	switch {
	case c.gatewayProcesses() > 0:
		return 0 // the gateway processes have their own (gwprocs.go)
	case c.Gateway.GOMAXPROCS > 0:
		return c.Gateway.GOMAXPROCS
	case envSet || !children:
		return 0
	}
	return max(1, cpus/2)
}

// workerConcurrency returns the worker.concurrency the worker processes
// get: w.Concurrency when set, else 64 × cpus when workerGOMAXPROCS put
// them on one thread by default, so that handlers that block (on a
// database, another service) have as many events at once per process as
// with Go's default GOMAXPROCS; else 0 (64 × their GOMAXPROCS).
func workerConcurrency(w WorkerConfig, envSet bool, cpus int) int {
	if w.Concurrency == 0 && w.GOMAXPROCS == 0 && workerGOMAXPROCS(w, envSet, cpus) == 1 {
		return 64 * cpus
	}
	return w.Concurrency
}
