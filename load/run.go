package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"
)

// Step is one rate of the fan-out workload.
type Step struct {
	Rate             int     `json:"rate"` // offered messages/s to the group
	Sent             int     `json:"sent"`
	SendRate         float64 `json:"send_rate"` // achieved messages/s
	Expected         uint64  `json:"expected"`  // sent × members
	Delivered        uint64  `json:"delivered"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	P50Ms            float64 `json:"p50_ms"`
	P99Ms            float64 `json:"p99_ms"`
	P999Ms           float64 `json:"p999_ms"`
	SendErrors       int     `json:"send_errors"`
}

// Result is what one run measured; it is printed as a table and written as
// JSON.
type Result struct {
	Workload  Workload `json:"workload"`
	Target    string   `json:"target"`
	Bare      bool     `json:"bare"`
	Conns     int      `json:"conns"`
	Connected int      `json:"connected"`
	Failed    int      `json:"failed"`
	Procs     int      `json:"procs"`
	SrcIPs    int      `json:"src_ips"`
	Duration  string   `json:"duration"`

	// Idle.
	PID             int     `json:"pid,omitempty"`
	RSSBeforeKiB    int64   `json:"rss_before_kib,omitempty"`
	RSSAfterKiB     int64   `json:"rss_after_kib,omitempty"`
	RSSPerConnBytes float64 `json:"rss_per_conn_bytes,omitempty"`
	IdleCPUPercent  float64 `json:"idle_cpu_percent,omitempty"`
	// Go heap and stacks of the target before the first connection and
	// at the end of the hold (gatework: its /metrics; the bare server
	// inside gwload: the runtime's own figures), and their growth per
	// connection. nil and zero when they could not be read (see GoMemErr).
	GoMemBefore       *GoMemory `json:"go_mem_before,omitempty"`
	GoMemAfter        *GoMemory `json:"go_mem_after,omitempty"`
	HeapPerConnBytes  float64   `json:"heap_per_conn_bytes,omitempty"`
	StackPerConnBytes float64   `json:"stack_per_conn_bytes,omitempty"`
	GoMemErr          string    `json:"go_mem_error,omitempty"`
	Disconnected      uint64    `json:"disconnected,omitempty"`
	// PIDs are the target's processes the idle figures sum: every process
	// listening on the WebSocket address (the gateway processes of a
	// master with gateway.processes) and Config.ExtraPIDs. PID is the
	// first. TargetsGone counts those gone by the end (restarted).
	PIDs        []int `json:"pids,omitempty"`
	TargetsGone int   `json:"targets_gone,omitempty"`
	// IdleCPUPer100k is the targets' CPU over the hold in cores per
	// 100,000 connections.
	IdleCPUPer100k float64 `json:"idle_cpu_cores_per_100k,omitempty"`
	// The clients (the child processes; not with InProcess): their RSS
	// at the end of the hold, per connection, and their CPU over the
	// hold (percent of one core).
	ClientRSSKiB       int64   `json:"client_rss_kib,omitempty"`
	ClientPerConnBytes float64 `json:"client_rss_per_conn_bytes,omitempty"`
	ClientCPUPercent   float64 `json:"client_cpu_percent,omitempty"`
	// The kernel: Slab of /proc/meminfo before the first connection and
	// at the end of the hold, and its growth per connection (both ends
	// of each connection are on this machine).
	SlabBeforeKiB      int64   `json:"slab_before_kib,omitempty"`
	SlabAfterKiB       int64   `json:"slab_after_kib,omitempty"`
	KernelPerConnBytes float64 `json:"kernel_per_conn_bytes,omitempty"`
	// BoxCPUPercent is the whole machine's busy CPU over the hold, in
	// percent of all its BoxCores cores.
	BoxCPUPercent float64 `json:"box_cpu_percent,omitempty"`
	BoxCores      int     `json:"box_cores,omitempty"`
	// OpenSeconds is how long opening every connection took, OpenRate the
	// connections opened per second.
	OpenSeconds float64 `json:"open_seconds,omitempty"`
	OpenRate    float64 `json:"open_rate,omitempty"`
	// MemAvailableMinKiB is the lowest MemAvailable seen during the run.
	MemAvailableMinKiB int64 `json:"mem_available_min_kib,omitempty"`

	// Echo and churn: round trips or cycles.
	Count  uint64  `json:"count,omitempty"`
	PerSec float64 `json:"per_sec,omitempty"`
	P50Ms  float64 `json:"p50_ms,omitempty"`
	P99Ms  float64 `json:"p99_ms,omitempty"`
	P999Ms float64 `json:"p999_ms,omitempty"`
	Errors uint64  `json:"errors,omitempty"`
	// ServerCPUPerOpUs is the target processes' CPU (see PIDs) per round
	// trip or cycle, in µs; ServerCPUPercent the same over the run, in
	// percent of one core. Zero with in-process children.
	ServerCPUPerOpUs float64 `json:"server_cpu_per_op_us,omitempty"`
	ServerCPUPercent float64 `json:"server_cpu_percent,omitempty"`
	Members          int     `json:"members,omitempty"` // fan-out group size
	Sender           string  `json:"sender,omitempty"`  // fan-out: "http" or "go-client"
	Senders          int     `json:"senders,omitempty"` // fan-out: sends in flight

	// Fan-out.
	Steps               []Step  `json:"steps,omitempty"`
	MaxDeliveriesPerSec float64 `json:"max_deliveries_per_sec,omitempty"`
	// AtMax is the step run at Config.AtMax of MaxDeliveriesPerSec, with
	// AtMaxFraction that fraction; nil when not asked for.
	AtMax         *Step   `json:"at_max,omitempty"`
	AtMaxFraction float64 `json:"at_max_fraction,omitempty"`

	// Overload.
	Overload *OverloadResult `json:"overload,omitempty"`

	// TUN: the clients emulated over a TUN device (Config.TUN).
	TUN *TUNResult `json:"tun,omitempty"`
}

// child is the parent's handle on one child process (or goroutine).
type child struct {
	pid   int // the child process; 0 for an in-process child
	in    io.WriteCloser
	msgs  chan childMsg
	done  chan error
	count int // connections reported so far
}

func (c *child) send(cmd childCmd) error {
	b, _ := json.Marshal(cmd)
	_, err := c.in.Write(append(b, '\n'))
	return err
}

// errChildGone is returned when a child ended before answering.
var errChildGone = errors.New("load: child ended before answering")

// recv returns the next message of type typ, passing progress messages to
// onProgress.
func (c *child) recv(ctx context.Context, typ string, onProgress func()) (childMsg, error) {
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				err := <-c.done
				if err == nil {
					err = errChildGone
				}
				c.done <- err
				return m, err
			}
			if m.Type == "progress" {
				c.count = m.Connected
				if onProgress != nil {
					onProgress()
				}
				continue
			}
			if m.Type == typ {
				return m, nil
			}
		case <-ctx.Done():
			return childMsg{}, fmt.Errorf("load: waiting for child: %w", ctx.Err())
		}
	}
}

// spawn starts one child, as a process re-executing this binary with
// `child <json>`, or as a goroutine when inProcess.
func spawn(ctx context.Context, cc ChildConfig, inProcess bool) (*child, error) {
	c := &child{msgs: make(chan childMsg, 16), done: make(chan error, 1)}
	var out io.Reader
	if inProcess {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		c.in, out = inW, outR
		go func() {
			err := RunChild(ctx, cc, inR, outW)
			_ = inR.CloseWithError(io.EOF)
			_ = outW.CloseWithError(err)
			c.done <- err
		}()
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("load: find own executable: %w", err)
		}
		arg, _ := json.Marshal(cc)
		cmd := exec.CommandContext(ctx, exe, "child", string(arg))
		cmd.Stderr = os.Stderr
		if cc.Workload == Idle && os.Getenv("GOMAXPROCS") == "" {
			// Idle clients of many children share the cores: one thread
			// of Go code each (one event loop) wakes up and spins the
			// least.
			cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		}
		if c.in, err = cmd.StdinPipe(); err != nil {
			return nil, fmt.Errorf("load: child stdin: %w", err)
		}
		pr, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("load: child stdout: %w", err)
		}
		out = pr
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("load: start child: %w", err)
		}
		c.pid = cmd.Process.Pid
		go func() {
			// Wait only once stdout is drained, as os/exec asks.
			readMsgs(out, c.msgs)
			err := cmd.Wait()
			if err != nil {
				err = fmt.Errorf("load: child: %w", err)
			}
			c.done <- err
		}()
		return c, nil
	}
	go readMsgs(out, c.msgs)
	return c, nil
}

// readMsgs decodes JSON lines from r into msgs and closes it at the end.
func readMsgs(r io.Reader, msgs chan<- childMsg) {
	defer close(msgs)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var m childMsg
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			msgs <- m
		}
	}
}

// Run performs one bounded run against cfg's target and returns what it
// measured. It blocks until the run is over (at most cfg.MaxDuration plus
// the time to stop the children) and leaves no child running.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	if cfg.TUN != "" {
		return RunTUN(ctx, cfg)
	}
	r := &Result{Workload: cfg.Workload, Target: cfg.WSAddr, Bare: cfg.Bare, Conns: cfg.Conns,
		Procs: cfg.Procs, SrcIPs: cfg.SrcIPs, Duration: cfg.Duration.String()}
	if cfg.Workload == Churn {
		r.Conns = 0
	}
	logf := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "gwload: "+format+"\n", args...)
		}
	}

	var before ProcStats
	if cfg.Workload == Idle {
		pids, err := targetPIDs(cfg)
		if err != nil {
			return nil, err
		}
		r.PID, r.PIDs = pids[0], pids
		var gone int
		if before, gone = ReadProcSet(pids); gone > 0 {
			return nil, fmt.Errorf("load: %d of the target processes %v not found", gone, pids)
		}
		r.RSSBeforeKiB = before.RSSKiB
		if mi, err := ReadMemInfo(); err == nil {
			r.SlabBeforeKiB = mi.SlabKiB
		}
		if len(pids) == 1 {
			r.GoMemBefore = readGoMem(ctx, cfg, r)
		}
	}
	ctx, stopGuard := guardMemory(ctx, cfg, r, logf)
	defer stopGuard()

	openStart := time.Now()
	children, err := startChildren(ctx, cfg, logf)
	defer stopChildren(children)
	if err != nil {
		return r, err
	}
	var addrs []string
	var firstErr string
	lastLog := time.Now()
	for _, c := range children {
		m, err := c.recv(ctx, "ready", func() {
			if time.Since(lastLog) < time.Second {
				return
			}
			lastLog = time.Now()
			n := 0
			for _, c := range children {
				n += c.count
			}
			secs := time.Since(openStart).Seconds()
			logf("%d connections open (%.0f/s)", n, float64(n)/secs)
		})
		if err != nil {
			return r, err
		}
		r.Connected += m.Connected
		r.Failed += m.Failed
		addrs = append(addrs, m.Addrs...)
		if m.Err != "" && firstErr == "" {
			firstErr = m.Err
		}
	}
	if cfg.Workload != Churn {
		r.OpenSeconds = time.Since(openStart).Seconds()
		r.OpenRate = float64(r.Connected) / r.OpenSeconds
		logf("%d connected, %d failed, in %.1f s (%.0f/s)", r.Connected, r.Failed, r.OpenSeconds, r.OpenRate)
		if r.Connected == 0 {
			return r, fmt.Errorf("load: no connection succeeded: %s", firstErr)
		}
		if firstErr != "" {
			logf("first connection error: %s", firstErr)
		}
	}

	switch cfg.Workload {
	case Idle:
		err = runIdle(ctx, cfg, r, before, children, logf)
	case Echo, Churn:
		err = runTimed(ctx, cfg, r, children, logf)
	case FanOut:
		err = runFanOut(ctx, cfg, r, children, addrs, logf)
	case Overload:
		err = runOverload(ctx, cfg, r, children, addrs, logf)
	}
	if cause := context.Cause(ctx); errors.Is(cause, errLowMemory) {
		err = cause
	}
	return r, err
}

func startChildren(ctx context.Context, cfg Config, logf func(string, ...any)) ([]*child, error) {
	total := cfg.Conns
	if cfg.Workload == Churn {
		total = cfg.Concurrency
	}
	url := "ws://" + cfg.WSAddr + cfg.Path
	var children []*child
	offset := 0
	for i := range cfg.Procs {
		n := total / cfg.Procs
		if i < total%cfg.Procs {
			n++
		}
		cc := ChildConfig{Workload: cfg.Workload, URL: url, Offset: offset, SrcIPs: cfg.srcIPs(), MsgSize: cfg.MsgSize, Welcome: cfg.Welcome, Deflate: cfg.Deflate}
		if cfg.Workload == Churn {
			cc.Concurrency = n
		} else {
			cc.Conns = n
			if cfg.OpenRate > 0 { // each child its share of the rate
				cc.Rate = cfg.OpenRate * float64(n) / float64(total)
			}
		}
		offset += n
		c, err := spawn(ctx, cc, cfg.InProcess)
		if err != nil {
			return children, err
		}
		children = append(children, c)
	}
	logf("%d child processes started for %s", len(children), cfg.Workload)
	return children, nil
}

// stopChildren tells every child to quit and waits for them, 30 s in all;
// after that Run's context, canceled once this returns, kills the child
// processes (and stops in-process children's dials).
func stopChildren(children []*child) {
	for _, c := range children {
		_ = c.send(childCmd{Cmd: "quit"})
		_ = c.in.Close()
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for _, c := range children {
	drain:
		for {
			select {
			case _, ok := <-c.msgs:
				if !ok {
					break drain
				}
			case <-timeout.C:
				return // Run's context, canceled next, kills what is left
			}
		}
		select {
		case <-c.done:
		case <-timeout.C:
			return
		}
	}
}

// collect sends cmd to every child and merges their reports.
func collect(ctx context.Context, children []*child, cmd childCmd) (*Histogram, uint64, uint64, time.Duration, error) {
	for _, c := range children {
		if err := c.send(cmd); err != nil {
			return nil, 0, 0, 0, fmt.Errorf("load: command child: %w", err)
		}
	}
	h := new(Histogram)
	var count, errs uint64
	var elapsed time.Duration
	for _, c := range children {
		m, err := c.recv(ctx, "report", nil)
		if err != nil {
			return nil, 0, 0, 0, err
		}
		h.Merge(m.Hist)
		count += m.Count
		errs += m.Errors
		elapsed = max(elapsed, m.Elapsed)
	}
	return h, count, errs, elapsed, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func runIdle(ctx context.Context, cfg Config, r *Result, before ProcStats, children []*child, logf func(string, ...any)) error {
	var clientPIDs []int
	for _, c := range children {
		if c.pid != 0 {
			clientPIDs = append(clientPIDs, c.pid)
		}
	}
	if err := measureHold(ctx, cfg, r, before, clientPIDs, logf); err != nil {
		return err
	}
	_, _, errs, _, err := collect(ctx, children, childCmd{Cmd: "report"})
	r.Disconnected = errs
	return err
}

// measureHold holds the idle connections for cfg.Duration and records in
// r the targets' and clientPIDs' memory and CPU over it, the kernel's
// slab growth and the machine's CPU. before is the targets' state before
// the first connection.
func measureHold(ctx context.Context, cfg Config, r *Result, before ProcStats, clientPIDs []int, logf func(string, ...any)) error {
	start, _ := ReadProcSet(r.PIDs)
	clientStart, _ := ReadProcSet(clientPIDs)
	boxStart, _ := ReadBoxCPU()
	t0 := time.Now()
	logf("holding %d idle connections for %s", r.Connected, cfg.Duration)
	defer ticking(logf, "holding")()
	if err := sleepCtx(ctx, cfg.Duration); err != nil {
		return err
	}
	end, gone := ReadProcSet(r.PIDs)
	clientEnd, _ := ReadProcSet(clientPIDs)
	boxEnd, _ := ReadBoxCPU()
	held := time.Since(t0)
	r.TargetsGone = gone
	r.RSSAfterKiB = end.RSSKiB
	r.RSSPerConnBytes = float64(end.RSSKiB-before.RSSKiB) * 1024 / float64(r.Connected)
	r.IdleCPUPercent = float64(end.CPUTicks-start.CPUTicks) / clockTicks / held.Seconds() * 100
	r.IdleCPUPer100k = r.IdleCPUPercent / 100 / float64(r.Connected) * 100_000
	if len(clientPIDs) > 0 {
		r.ClientRSSKiB = clientEnd.RSSKiB
		r.ClientPerConnBytes = float64(clientEnd.RSSKiB) * 1024 / float64(r.Connected)
		r.ClientCPUPercent = float64(clientEnd.CPUTicks-clientStart.CPUTicks) / clockTicks / held.Seconds() * 100
	}
	if mi, err := ReadMemInfo(); err == nil && r.SlabBeforeKiB > 0 {
		r.SlabAfterKiB = mi.SlabKiB
		r.KernelPerConnBytes = float64(mi.SlabKiB-r.SlabBeforeKiB) * 1024 / float64(r.Connected)
	}
	if d := boxEnd.Total - boxStart.Total; d > 0 {
		r.BoxCPUPercent = float64(boxEnd.Busy-boxStart.Busy) / float64(d) * 100
		r.BoxCores = boxEnd.Cores
	}
	if r.GoMemBefore != nil {
		if r.GoMemAfter = readGoMem(ctx, cfg, r); r.GoMemAfter != nil {
			r.HeapPerConnBytes = float64(r.GoMemAfter.HeapInuse-r.GoMemBefore.HeapInuse) / float64(r.Connected)
			r.StackPerConnBytes = float64(r.GoMemAfter.StackInuse-r.GoMemBefore.StackInuse) / float64(r.Connected)
		}
	}
	return nil
}

// errLowMemory ends a run whose machine ran short of memory.
var errLowMemory = errors.New("load: free memory below --min-free: run stopped, connections closed")

// guardMemory watches MemAvailable every second while the run lasts: below
// cfg.MinFreeBytes it cancels the returned context (the run then closes
// every connection and returns errLowMemory). It records the lowest value
// in r. stop ends the watch.
func guardMemory(ctx context.Context, cfg Config, r *Result, logf func(string, ...any)) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			mi, err := ReadMemInfo()
			if err == nil && mi.MemAvailableKiB > 0 {
				if r.MemAvailableMinKiB == 0 || mi.MemAvailableKiB < r.MemAvailableMinKiB {
					r.MemAvailableMinKiB = mi.MemAvailableKiB
				}
				if cfg.MinFreeBytes > 0 && mi.MemAvailableKiB*1024 < cfg.MinFreeBytes {
					logf("MemAvailable %d MiB is below --min-free %d MiB: stopping", mi.MemAvailableKiB>>10, cfg.MinFreeBytes>>20)
					cancel(errLowMemory)
					return
				}
			}
			select {
			case <-t.C:
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	})
	return ctx, func() {
		close(done)
		wg.Wait()
		cancel(nil)
	}
}

// readGoMem reads the target's Go heap and stacks: the bare server's from
// this process (when it runs here and the children are processes), a
// node's from its /metrics. On failure it records the error in r and
// returns nil: the figures are optional, RSS is the main one.
func readGoMem(ctx context.Context, cfg Config, r *Result) *GoMemory {
	if cfg.Bare {
		if cfg.PID != os.Getpid() || cfg.InProcess {
			r.GoMemErr = "bare server in another process (or clients in this one): no Go memory figures"
			return nil
		}
		m := ownGoMemory()
		return &m
	}
	if cfg.HTTPAddr == "" {
		r.GoMemErr = "no --http address: no Go memory figures"
		return nil
	}
	m, err := ReadGoMemory(ctx, cfg.HTTPAddr, cfg.Token)
	if err != nil {
		r.GoMemErr = err.Error()
		return nil
	}
	return &m
}

// targetPIDs returns the processes whose memory and CPU count as the
// target's: cfg.PID, or every process listening on cfg.WSAddr, and
// cfg.ExtraPIDs.
func targetPIDs(cfg Config) ([]int, error) {
	pids := []int{cfg.PID}
	if cfg.PID == 0 {
		ps, err := FindListenerPIDs(cfg.WSAddr)
		if err != nil {
			return nil, fmt.Errorf("%w (give --pid)", err)
		}
		pids = ps
	}
	for _, p := range cfg.ExtraPIDs {
		if !slices.Contains(pids, p) {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

func runTimed(ctx context.Context, cfg Config, r *Result, children []*child, logf func(string, ...any)) error {
	logf("running %s for %s", cfg.Workload, cfg.Duration)
	defer ticking(logf, string(cfg.Workload))()
	// The server's CPU over the run (the bare server runs in this
	// process, which the listener lookup finds). Not with in-process
	// children: their CPU is this process's too.
	pids, _ := targetPIDs(cfg)
	if cfg.InProcess {
		pids = nil
	}
	cpu0, _ := ReadProcSet(pids)
	h, count, errs, elapsed, err := collect(ctx, children, childCmd{Cmd: "run", Dur: cfg.Duration})
	if err != nil {
		return err
	}
	r.Count, r.Errors = count, errs
	if elapsed > 0 {
		r.PerSec = float64(count) / elapsed.Seconds()
	}
	if cpu1, gone := ReadProcSet(pids); len(pids) > 0 && gone == 0 && count > 0 {
		r.PIDs = pids
		r.ServerCPUPerOpUs = float64(cpu1.CPUTicks-cpu0.CPUTicks) / clockTicks * 1e6 / float64(count)
		r.ServerCPUPercent = float64(cpu1.CPUTicks-cpu0.CPUTicks) / clockTicks / elapsed.Seconds() * 100
	}
	r.P50Ms, r.P99Ms, r.P999Ms = ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Quantile(0.999))
	return nil
}

// ticking logs the elapsed time every 5 s until the returned function is
// called.
func ticking(logf func(string, ...any), what string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t0 := time.Now()
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				logf("%s: %s elapsed", what, time.Since(t0).Round(time.Second))
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
