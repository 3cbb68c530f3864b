package master

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors of the Supervisor. Callers branch with errors.Is.
var (
	// ErrStopped: Start or Reload on a supervisor that is stopping.
	ErrStopped = errors.New("master: stopped")
	// ErrNotReady: a child did not report ready within ReadyTimeout, or
	// exited before it did.
	ErrNotReady = errors.New("master: worker process not ready")
)

// Back-off of the restarts of a crashed child: the first restart waits
// minBackoff, each further one twice as long, up to maxBackoff; a child
// that ran for stableAfter resets it.
const (
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 5 * time.Second
	stableAfter = 10 * time.Second
)

// ReadyLine is the line a child writes on its standard output once it
// serves events.
const ReadyLine = "ready"

// The stats exchange: the master writes StatsRequest as a line on a ready
// child's standard input; the child answers with a line of StatsPrefix
// followed by one JSON value on its standard output.
const (
	StatsRequest = "stats"
	StatsPrefix  = "gatework:stats "
)

// maxHandoff bounds Config.Handoff, well below a pipe's 64 KiB buffer.
const maxHandoff = 32 << 10

// Config configures a Supervisor.
type Config struct {
	// Path is the program of the children, typically os.Executable().
	Path string
	// Args are the children's arguments after the program name (such as
	// ["worker", "--app", "echo"]).
	Args []string
	// Env is the children's whole environment; nil means the master's.
	Env []string
	// Handoff, if not empty, is written to every child's standard input,
	// followed by a newline, as soon as it starts and before anything
	// else: the way to give children what must stay out of their
	// environment and arguments, which other processes of the same user
	// can read (/proc/<pid>/environ, ps), such as a password. It must not
	// contain a newline and is at most 32 KiB (a pipe takes it whole: the
	// write never waits for the child).
	Handoff []byte
	// Processes is how many children run; it must be at least 1.
	Processes int
	// ReadyTimeout bounds the wait for a child's ready line; 0 means 15s.
	ReadyTimeout time.Duration
	// StopTimeout bounds a child's graceful stop after SIGTERM, after
	// which it is killed; 0 means 30s.
	StopTimeout time.Duration
	// Stderr receives the children's standard error (their logs); nil
	// means os.Stderr. It must be safe for concurrent writes if it is not
	// an *os.File.
	Stderr io.Writer
	// Logger receives the supervisor's logs; nil means slog.Default().
	Logger *slog.Logger
	// Kind names the children in the logs; "" means "worker process".
	Kind string
	// FailLimit, when positive, is how many crashes of one slot within
	// FailWindow make it failing: it is reported (an error log, and
	// Process.Failing) and its next start waits FailBackoff instead of
	// the usual back-off. A child that then runs for 10s clears it. 0
	// means no limit: the back-off alone (100ms doubling up to 5s).
	FailLimit int
	// FailWindow is the window of FailLimit; 0 means one minute.
	FailWindow time.Duration
	// FailBackoff is the wait before the next start of a failing slot;
	// 0 means 30s.
	FailBackoff time.Duration
}

// Process describes one child, as Status reports it.
type Process struct {
	// Slot numbers the child's place, 0 to Processes-1; a restarted or
	// reloaded child takes the place of the one it replaces.
	Slot int `json:"slot"`
	// PID is the child's process id.
	PID int `json:"pid"`
	// Generation is 0 for the children of Start, n after the nth reload.
	Generation int `json:"generation"`
	// Started is when the child was started.
	Started time.Time `json:"started"`
	// Ready says whether it reported ready and still runs (false while a
	// crashed child waits for its restart: PID is then the dead one's).
	Ready bool `json:"ready"`
	// Restarts counts the restarts of this slot after crashes.
	Restarts int `json:"restarts"`
	// Failing says the slot crashed Config.FailLimit times within
	// Config.FailWindow: its restarts wait Config.FailBackoff.
	Failing bool `json:"failing,omitempty"`
	// LastExit describes the latest crash of the slot ("" if none).
	LastExit string `json:"last_exit,omitempty"`
}

// Counters are the supervisor's totals since Start.
type Counters struct {
	// Crashes counts children that exited without being asked to.
	Crashes uint64 `json:"crashes"`
	// Restarts counts children started to replace crashed ones.
	Restarts uint64 `json:"restarts"`
	// Reloads and FailedReloads count the calls of Reload by outcome.
	Reloads       uint64 `json:"reloads"`
	FailedReloads uint64 `json:"failed_reloads"`
	// Failing counts the times a slot became failing (Config.FailLimit).
	Failing uint64 `json:"failing,omitempty"`
}

// Supervisor runs and watches the child processes. Its methods are safe for
// concurrent use; Reload calls run one at a time.
//
// A child inherits its standard input, output and error and no other
// descriptor: before each start the supervisor marks every other
// descriptor of the process close-on-exec (on Linux), a safety net behind
// the rule that this program opens every descriptor close-on-exec.
//
// Lock order: reloadMu before mu.
type Supervisor struct {
	cfg Config
	log *slog.Logger

	reloadMu sync.Mutex
	queryMu  sync.Mutex // one Stats exchange at a time

	mu       sync.Mutex
	slots    []*slot
	gen      int
	stopping bool
	counters Counters
	watchers sync.WaitGroup // one per child: reads its stdout and waits for it
}

// slot is one place of a child.
type slot struct {
	idx      int
	cur      *proc
	backoff  time.Duration
	timer    *time.Timer // a pending restart, or nil
	restarts int
	crashes  []time.Time // the latest crashes, at most Config.FailLimit
	failing  bool
	lastExit string
}

// proc is one child process.
type proc struct {
	slot     *slot
	cmd      *exec.Cmd
	gen      int
	started  time.Time
	stdin    io.WriteCloser
	ready    chan struct{} // closed when the ready line came
	stats    chan []byte   // answers to StatsRequest; a full channel drops them
	done     chan struct{} // closed once the process was waited for
	err      error         // the exit error; set before done is closed
	retiring bool          // guarded by Supervisor.mu: asked to stop
	isReady  bool          // guarded by Supervisor.mu
	exited   bool          // guarded by Supervisor.mu: exited saw it go
}

// New returns a supervisor for cfg; it starts nothing.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Path == "" {
		return nil, errors.New("master: no program path")
	}
	if cfg.Processes < 1 {
		return nil, fmt.Errorf("master: processes %d: must be at least 1", cfg.Processes)
	}
	if bytes.IndexByte(cfg.Handoff, '\n') >= 0 || len(cfg.Handoff) > maxHandoff {
		return nil, fmt.Errorf("master: handoff of %d bytes: must be one line of at most %d", len(cfg.Handoff), maxHandoff)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 15 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Kind == "" {
		cfg.Kind = "worker process"
	}
	if cfg.FailWindow <= 0 {
		cfg.FailWindow = time.Minute
	}
	if cfg.FailBackoff <= 0 {
		cfg.FailBackoff = 30 * time.Second
	}
	return &Supervisor{cfg: cfg, log: cfg.Logger}, nil
}

// Start starts the children and blocks until every one reported ready. If
// one fails to (within ReadyTimeout or ctx), all are killed and the error
// wraps ErrNotReady or ctx.Err(). A Supervisor starts once.
func (s *Supervisor) Start(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return ErrStopped
	}
	if s.slots != nil {
		s.mu.Unlock()
		return errors.New("master: already started")
	}
	s.slots = make([]*slot, s.cfg.Processes)
	for i := range s.slots {
		s.slots[i] = &slot{idx: i, backoff: minBackoff}
	}
	s.mu.Unlock()
	ps, err := s.spawnAll(ctx, 0)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range ps {
		s.adoptLocked(s.slots[i], p)
	}
	return nil
}

// adoptLocked makes p the current child of sl. A child that already exited
// (after its ready line, before it was adopted: exited then ignored it)
// is handled as a crash now.
func (s *Supervisor) adoptLocked(sl *slot, p *proc) {
	sl.cur = p
	if p.exited {
		s.crashedLocked(p)
	}
}

// spawnAll starts one child per slot of generation gen and waits until all
// are ready; on failure it kills them and waits for them.
func (s *Supervisor) spawnAll(ctx context.Context, gen int) ([]*proc, error) {
	ps := make([]*proc, 0, len(s.slots))
	fail := func(err error) ([]*proc, error) {
		for _, p := range ps {
			_ = p.cmd.Process.Kill()
		}
		for _, p := range ps {
			<-p.done
		}
		return nil, err
	}
	for _, sl := range s.slots {
		p, err := s.spawn(sl, gen)
		if err != nil {
			return fail(err)
		}
		ps = append(ps, p)
	}
	timer := time.NewTimer(s.cfg.ReadyTimeout)
	defer timer.Stop()
	for _, p := range ps {
		select {
		case <-p.ready:
		case <-p.done:
			if p.readyClosed() {
				continue // ready, then gone: a crash, once adopted
			}
			return fail(fmt.Errorf("%w: pid %d exited before it was ready: %v", ErrNotReady, p.cmd.Process.Pid, p.err))
		case <-timer.C:
			return fail(fmt.Errorf("%w: pid %d not ready within %v", ErrNotReady, p.cmd.Process.Pid, s.cfg.ReadyTimeout))
		case <-ctx.Done():
			return fail(fmt.Errorf("master: waiting for workers: %w", ctx.Err()))
		}
	}
	return ps, nil
}

// spawn starts one child for sl; it does not wait for it to be ready.
func (s *Supervisor) spawn(sl *slot, gen int) (*proc, error) {
	cmd := exec.Command(s.cfg.Path, s.cfg.Args...)
	cmd.Env = s.cfg.Env
	cmd.Stderr = s.cfg.Stderr
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	closeOnExec() // a child inherits stdin, stdout and stderr only
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("master: start %s: %w", s.cfg.Kind, err)
	}
	if len(s.cfg.Handoff) > 0 {
		// Within a pipe's buffer: it does not block. A child that died at
		// once is seen by watch.
		if _, err := stdin.Write(append(append(make([]byte, 0, len(s.cfg.Handoff)+1), s.cfg.Handoff...), '\n')); err != nil {
			s.log.Warn(s.cfg.Kind+": handoff not written", "pid", cmd.Process.Pid, "err", err)
		}
	}
	p := &proc{
		slot: sl, cmd: cmd, gen: gen, started: time.Now(), stdin: stdin,
		ready: make(chan struct{}), done: make(chan struct{}), stats: make(chan []byte, 1),
	}
	s.log.Info(s.cfg.Kind+" started", "pid", cmd.Process.Pid, "slot", sl.idx, "generation", gen)
	s.watchers.Add(1)
	go s.watch(p, stdout)
	return p, nil
}

// watch reads the child's stdout for the ready line, then waits for its
// exit and handles it.
func (s *Supervisor) watch(p *proc, stdout io.Reader) {
	defer s.watchers.Done()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if !p.readyClosed() && strings.TrimSpace(sc.Text()) == ReadyLine {
			s.mu.Lock()
			p.isReady = true
			s.mu.Unlock()
			close(p.ready)
			s.log.Info(s.cfg.Kind+" ready", "pid", p.cmd.Process.Pid, "slot", p.slot.idx, "generation", p.gen)
			continue
		}
		if js, ok := bytes.CutPrefix(sc.Bytes(), []byte(StatsPrefix)); ok {
			select {
			case p.stats <- bytes.Clone(js):
			default:
			}
			continue
		}
		// What the app prints goes with the logs.
		_, _ = s.cfg.Stderr.Write(append(sc.Bytes(), '\n'))
	}
	_, _ = io.Copy(s.cfg.Stderr, stdout) // after a line too long to scan
	p.err = p.cmd.Wait()
	_ = p.stdin.Close()
	close(p.done)
	s.exited(p)
}

func (p *proc) readyClosed() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

// exited handles the exit of p: a crash of a current child schedules its
// restart.
func (s *Supervisor) exited(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.exited = true
	sl := p.slot
	if s.stopping || p.retiring || sl.cur != p {
		s.log.Info(s.cfg.Kind+" exited", "pid", p.cmd.Process.Pid, "slot", sl.idx, "status", exitStatus(p.err))
		return
	}
	s.crashedLocked(p)
}

// crashedLocked handles the exit of sl's current child p, not asked for:
// it counts the crash and schedules the restart, after the failing
// back-off when the slot crashed FailLimit times within FailWindow.
func (s *Supervisor) crashedLocked(p *proc) {
	sl := p.slot
	now := time.Now()
	s.counters.Crashes++
	sl.lastExit = exitStatus(p.err)
	if now.Sub(p.started) >= stableAfter {
		sl.backoff = minBackoff
		sl.failing = false
		sl.crashes = sl.crashes[:0]
	}
	d := sl.backoff
	sl.backoff = min(2*sl.backoff, maxBackoff)
	if n := s.cfg.FailLimit; n > 0 {
		keep := sl.crashes[:0]
		for _, t := range sl.crashes {
			if now.Sub(t) < s.cfg.FailWindow {
				keep = append(keep, t)
			}
		}
		sl.crashes = append(keep, now)
		if len(sl.crashes) > n {
			sl.crashes = sl.crashes[len(sl.crashes)-n:]
		}
		if len(sl.crashes) >= n {
			if !sl.failing {
				s.counters.Failing++
			}
			sl.failing = true
			d = s.cfg.FailBackoff
			s.log.Error(s.cfg.Kind+" failing: backed off", "pid", p.cmd.Process.Pid, "slot", sl.idx,
				"status", sl.lastExit, "crashes", len(sl.crashes), "within", s.cfg.FailWindow.String(),
				"restart_in", d.String())
			sl.timer = time.AfterFunc(d, func() { s.restart(sl, p) })
			return
		}
	}
	s.log.Error(s.cfg.Kind+" crashed", "pid", p.cmd.Process.Pid, "slot", sl.idx, "status", sl.lastExit,
		"restart_in", d.String(), "crashes", s.counters.Crashes)
	sl.timer = time.AfterFunc(d, func() { s.restart(sl, p) })
}

// scheduleRestartLocked restarts the child of sl after its back-off,
// unless sl has moved on from old by then.
func (s *Supervisor) scheduleRestartLocked(sl *slot, old *proc) {
	d := sl.backoff
	sl.backoff = min(2*sl.backoff, maxBackoff)
	sl.timer = time.AfterFunc(d, func() { s.restart(sl, old) })
}

func (s *Supervisor) restart(sl *slot, old *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || sl.cur != old {
		return
	}
	sl.timer = nil
	p, err := s.spawn(sl, old.gen)
	if err != nil {
		s.log.Error(s.cfg.Kind+" restart failed", "slot", sl.idx, "err", err)
		s.scheduleRestartLocked(sl, old)
		return
	}
	sl.cur = p
	sl.restarts++
	s.counters.Restarts++
	// A child that never gets ready is killed: its exit is a crash.
	go func() {
		select {
		case <-p.ready:
		case <-p.done:
		case <-time.After(s.cfg.ReadyTimeout):
			s.log.Error("restarted "+s.cfg.Kind+" not ready, killing it", "pid", p.cmd.Process.Pid, "timeout", s.cfg.ReadyTimeout.String())
			_ = p.cmd.Process.Kill()
		}
	}()
}

// Reload replaces every child: it starts a new generation from the
// program now on disk, waits until all of them are ready, then asks the old
// ones to stop (SIGTERM: they drain and finish the events in hand) and
// waits for them to exit (killing those that take longer than
// StopTimeout). If a new child fails to start or to become ready within
// ReadyTimeout, the new ones are killed, the old ones keep running and the
// error wraps ErrNotReady. Reload calls run one at a time.
func (s *Supervisor) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	if s.stopping || s.slots == nil {
		s.mu.Unlock()
		return ErrStopped
	}
	gen := s.gen + 1
	s.mu.Unlock()
	s.log.Info("reload: starting new "+s.cfg.Kind+"es", "generation", gen, "processes", len(s.slots))
	ps, err := s.spawnAll(ctx, gen)
	s.mu.Lock()
	if err == nil && s.stopping {
		err = ErrStopped
		for _, p := range ps {
			_ = p.cmd.Process.Kill()
		}
	}
	if err != nil {
		s.counters.FailedReloads++
		s.mu.Unlock()
		s.log.Error("reload failed: the old "+s.cfg.Kind+"es keep serving", "err", err)
		return fmt.Errorf("master: reload: %w", err)
	}
	s.gen = gen
	s.counters.Reloads++
	old := make([]*proc, 0, len(s.slots))
	for i, sl := range s.slots {
		if sl.timer != nil {
			sl.timer.Stop()
			sl.timer = nil
		}
		if sl.cur != nil {
			sl.cur.retiring = true
			old = append(old, sl.cur)
		}
		sl.backoff = minBackoff
		sl.failing = false
		sl.crashes = sl.crashes[:0]
		s.adoptLocked(sl, ps[i])
	}
	s.mu.Unlock()
	s.log.Info("reload: new "+s.cfg.Kind+"es ready, stopping the old ones", "generation", gen)
	s.stopProcs(ctx, old)
	s.log.Info("reload done", "generation", gen)
	return nil
}

// stopProcs sends SIGTERM to ps and waits for them, killing the ones that
// outlive StopTimeout or ctx.
func (s *Supervisor) stopProcs(ctx context.Context, ps []*proc) {
	for _, p := range ps {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	timer := time.NewTimer(s.cfg.StopTimeout)
	defer timer.Stop()
	for _, p := range ps {
		select {
		case <-p.done:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		s.log.Warn(s.cfg.Kind+" did not stop in time, killing it", "pid", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Stop stops every child gracefully (SIGTERM, then SIGKILL after
// StopTimeout or when ctx expires) and waits for them; restarts stop. It
// is idempotent.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	var ps []*proc
	for _, sl := range s.slots {
		if sl.timer != nil {
			sl.timer.Stop()
			sl.timer = nil
		}
		if sl.cur != nil {
			ps = append(ps, sl.cur)
		}
	}
	s.mu.Unlock()
	s.stopProcs(ctx, ps)
	// A Reload in progress kills its new children once it sees stopping.
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.watchers.Wait()
	return nil
}

// Status returns the current children and the counters.
func (s *Supervisor) Status() ([]Process, Counters) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]Process, 0, len(s.slots))
	for _, sl := range s.slots {
		p := sl.cur
		if p == nil {
			continue
		}
		if sl.failing && p.isReady && !p.exited && now.Sub(p.started) >= stableAfter {
			// Its replacement has run long enough: no longer failing.
			sl.failing = false
			sl.crashes = sl.crashes[:0]
		}
		out = append(out, Process{
			Slot: sl.idx, PID: p.cmd.Process.Pid, Generation: p.gen,
			Started: p.started, Ready: p.isReady && !p.exited, Restarts: sl.restarts,
			Failing: sl.failing, LastExit: sl.lastExit,
		})
	}
	return out, s.counters
}

// Stats asks every ready child for its stats (see StatsRequest) and
// returns the answers by pid; a child that does not answer within timeout
// is left out. It blocks for at most timeout; calls run one at a time.
func (s *Supervisor) Stats(timeout time.Duration) map[int]json.RawMessage {
	s.queryMu.Lock()
	defer s.queryMu.Unlock()
	s.mu.Lock()
	var ps []*proc
	for _, sl := range s.slots {
		if p := sl.cur; p != nil && p.isReady {
			ps = append(ps, p)
		}
	}
	s.mu.Unlock()
	for _, p := range ps {
		select {
		case <-p.stats: // a late answer to an earlier request
		default:
		}
		if d, ok := p.stdin.(interface{ SetWriteDeadline(time.Time) error }); ok {
			_ = d.SetWriteDeadline(time.Now().Add(timeout))
		}
		_, _ = io.WriteString(p.stdin, StatsRequest+"\n")
	}
	out := make(map[int]json.RawMessage, len(ps))
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, p := range ps {
		select {
		case js := <-p.stats:
			if json.Valid(js) {
				out[p.cmd.Process.Pid] = js
			}
		case <-p.done:
		case <-deadline.C:
			return out
		}
	}
	return out
}

// exitStatus describes a child's exit error.
func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
