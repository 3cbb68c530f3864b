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

	// Echo and churn: round trips or cycles.
	Count   uint64  `json:"count,omitempty"`
	PerSec  float64 `json:"per_sec,omitempty"`
	P50Ms   float64 `json:"p50_ms,omitempty"`
	P99Ms   float64 `json:"p99_ms,omitempty"`
	P999Ms  float64 `json:"p999_ms,omitempty"`
	Errors  uint64  `json:"errors,omitempty"`
	Members int     `json:"members,omitempty"` // fan-out group size
	Sender  string  `json:"sender,omitempty"`  // fan-out: "http" or "go-client"
	Senders int     `json:"senders,omitempty"` // fan-out: sends in flight

	// Fan-out.
	Steps               []Step  `json:"steps,omitempty"`
	MaxDeliveriesPerSec float64 `json:"max_deliveries_per_sec,omitempty"`
	// AtMax is the step run at Config.AtMax of MaxDeliveriesPerSec, with
	// AtMaxFraction that fraction; nil when not asked for.
	AtMax         *Step   `json:"at_max,omitempty"`
	AtMaxFraction float64 `json:"at_max_fraction,omitempty"`

	// Overload.
	Overload *OverloadResult `json:"overload,omitempty"`
}

// child is the parent's handle on one child process (or goroutine).
type child struct {
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
		pid := cfg.PID
		if pid == 0 {
			p, err := FindListenerPID(cfg.WSAddr)
			if err != nil {
				return nil, fmt.Errorf("%w (give --pid)", err)
			}
			pid = p
		}
		r.PID = pid
		var err error
		if before, err = ReadProcStats(pid); err != nil {
			return nil, err
		}
		r.RSSBeforeKiB = before.RSSKiB
		r.GoMemBefore = readGoMem(ctx, cfg, r)
	}

	children, err := startChildren(ctx, cfg, logf)
	defer stopChildren(children)
	if err != nil {
		return r, err
	}
	var addrs []string
	var firstErr string
	for _, c := range children {
		m, err := c.recv(ctx, "ready", func() {
			n := 0
			for _, c := range children {
				n += c.count
			}
			logf("%d connections open", n)
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
		logf("%d connected, %d failed", r.Connected, r.Failed)
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
	start, err := ReadProcStats(r.PID)
	if err != nil {
		return err
	}
	t0 := time.Now()
	logf("holding %d idle connections for %s", r.Connected, cfg.Duration)
	defer ticking(logf, "holding")()
	if err := sleepCtx(ctx, cfg.Duration); err != nil {
		return err
	}
	end, err := ReadProcStats(r.PID)
	if err != nil {
		return err
	}
	held := time.Since(t0)
	r.RSSAfterKiB = end.RSSKiB
	r.RSSPerConnBytes = float64(end.RSSKiB-before.RSSKiB) * 1024 / float64(r.Connected)
	r.IdleCPUPercent = float64(end.CPUTicks-start.CPUTicks) / clockTicks / held.Seconds() * 100
	if r.GoMemBefore != nil {
		if r.GoMemAfter = readGoMem(ctx, cfg, r); r.GoMemAfter != nil {
			r.HeapPerConnBytes = float64(r.GoMemAfter.HeapInuse-r.GoMemBefore.HeapInuse) / float64(r.Connected)
			r.StackPerConnBytes = float64(r.GoMemAfter.StackInuse-r.GoMemBefore.StackInuse) / float64(r.Connected)
		}
	}
	_, _, errs, _, err := collect(ctx, children, childCmd{Cmd: "report"})
	r.Disconnected = errs
	return err
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

func runTimed(ctx context.Context, cfg Config, r *Result, children []*child, logf func(string, ...any)) error {
	logf("running %s for %s", cfg.Workload, cfg.Duration)
	defer ticking(logf, string(cfg.Workload))()
	h, count, errs, elapsed, err := collect(ctx, children, childCmd{Cmd: "run", Dur: cfg.Duration})
	if err != nil {
		return err
	}
	r.Count, r.Errors = count, errs
	if elapsed > 0 {
		r.PerSec = float64(count) / elapsed.Seconds()
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
