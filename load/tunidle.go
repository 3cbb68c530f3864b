package load

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/gatework/gatework/load/tunclient"
)

// TUNResult is what an idle run over a TUN device adds to its Result.
type TUNResult struct {
	Device string `json:"device"`
	Queues int    `json:"queues"`
	// Stats are the client engine's counters at the end (after the
	// orderly close); AtHoldEnd at the end of the hold.
	Stats     tunclient.Stats `json:"stats"`
	AtHoldEnd tunclient.Stats `json:"at_hold_end"`
	// DeviceDrops is the device's tx_dropped after the open, at the end
	// of the hold and at the end: packets from the server to the clients
	// the device's queue dropped because gwload did not read them in
	// time (TCP sends them again). -1 when not readable.
	DropsOpen int64 `json:"drops_open"`
	DropsHold int64 `json:"drops_hold"`
	DropsEnd  int64 `json:"drops_end"`
	// CloseSeconds is how long the orderly close of every client took.
	CloseSeconds float64 `json:"close_seconds"`
	CloseErr     string  `json:"close_error,omitempty"`
	// Stop is set when the server was stopped with the clients connected
	// (Config.StopCmd) instead of the orderly close.
	Stop *StopResult `json:"stop,omitempty"`
}

// StopResult is how a server stop with every client connected went
// (Config.StopCmd): how long the command ran and how it exited, and when
// the last client had gone. How each client ended is in the difference
// between TUNResult.Stats and AtHoldEnd.
type StopResult struct {
	Cmd     string  `json:"cmd"`
	Seconds float64 `json:"seconds"`
	Err     string  `json:"error,omitempty"` // the command's error (exit status), if any
	// GoneSeconds is from the command's start until no client was left
	// connected (or until the wait for them ended: Left > 0).
	GoneSeconds float64 `json:"gone_seconds"`
	// Left counts the clients still connected stopAfter past the command's end.
	Left int `json:"left"`
}

func (s *StopResult) exit() string {
	if s.Err != "" {
		return s.Err
	}
	return "exit 0"
}

// stopAfter is how long the clients may take to see their connection end
// once the stop command has returned.
const stopAfter = 30 * time.Second

// stopServer runs cmd (through sh -c) while every client is connected and
// waits until none is left, at most stopAfter past the command's end.
func stopServer(ctx context.Context, e *tunclient.Engine, cmd string, logf func(string, ...any)) *StopResult {
	r := &StopResult{Cmd: cmd}
	logf("stopping the server with %q while %d clients are connected", cmd, e.Stats().Live)
	start := time.Now()
	stopLog := logEvery(time.Second, func() {
		st := e.Stats()
		logf("stopping: %d live, %d close frames 1001, %d FINs, %d RSTs", st.Live, st.GoingAway, st.ServerFINs, st.Resets)
	})
	defer stopLog()
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	if err := c.Run(); err != nil {
		r.Err = err.Error()
	}
	r.Seconds = time.Since(start).Seconds()
	deadline := time.Now().Add(stopAfter)
	for e.Stats().Live > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	r.GoneSeconds = time.Since(start).Seconds()
	r.Left = e.Stats().Live
	return r
}

// RunTUN is the idle workload with the clients emulated by package
// load/tunclient over the TUN device cfg.TUN, in this process: no
// client socket and no child process. The target listens on the
// device's own address (cfg.WSAddr) in the same network namespace; the
// report is the idle workload's, with this process as the client.
// Disconnected counts the unexpected closes while open and held.
func RunTUN(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.TUN == "" {
		return nil, errors.New("load: RunTUN without a TUN device")
	}
	srv, err := netip.ParseAddrPort(cfg.WSAddr)
	if err != nil {
		return nil, fmt.Errorf("load: TUN target: %w", err)
	}
	if cfg.CloseRate == 0 {
		cfg.CloseRate = 5000
	}
	cfg.TUNQueues = max(cfg.TUNQueues, 1)
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	logf := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "gwload: "+format+"\n", args...)
		}
	}
	const portsPerAddr = 50_000
	r := &Result{Workload: Idle, Target: cfg.WSAddr, Conns: cfg.Conns, Procs: 1,
		SrcIPs: (cfg.Conns + portsPerAddr - 1) / portsPerAddr, Duration: cfg.Duration.String(),
		TUN: &TUNResult{Device: cfg.TUN, Queues: cfg.TUNQueues}}
	pids, err := targetPIDs(cfg)
	if err != nil {
		return nil, err
	}
	r.PID, r.PIDs = pids[0], pids
	before, gone := ReadProcSet(pids)
	if gone > 0 {
		return nil, fmt.Errorf("load: %d of the target processes %v not found", gone, pids)
	}
	r.RSSBeforeKiB = before.RSSKiB
	if mi, err := ReadMemInfo(); err == nil {
		r.SlabBeforeKiB = mi.SlabKiB
	}
	if len(pids) == 1 {
		r.GoMemBefore = readGoMem(ctx, cfg, r)
	}

	devs, err := tunclient.OpenTUN(cfg.TUN, cfg.TUNQueues)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	links := make([]tunclient.Link, len(devs))
	for i, d := range devs {
		links[i] = d
	}
	tcfg := tunclient.Config{Server: srv, Path: cfg.Path, Conns: cfg.Conns, Rate: cfg.OpenRate,
		PortsPerAddr: portsPerAddr, NoRing: cfg.TUNNoRing, NoTimestamps: cfg.TUNNoTimestamps}
	if cfg.OpenMinIdle > 0 {
		gate := startIdleGate(cfg.OpenMinIdle / 100)
		defer gate.Stop()
		tcfg.Pause = gate.Paused
	}
	e, err := tunclient.New(tcfg, links...)
	if err != nil {
		closeDevs(devs)
		return nil, fmt.Errorf("load: %w", err)
	}
	e.Start()
	defer func() { _ = e.Stop() }()
	gctx, stopGuard := guardMemory(ctx, cfg, r, logf)
	defer stopGuard()

	logf("opening %d connections over %s (%d queues) to %s at %.0f/s", cfg.Conns, cfg.TUN, cfg.TUNQueues, cfg.WSAddr, cfg.OpenRate)
	openStart := time.Now()
	stopLog := logEvery(time.Second, func() {
		st := e.Stats()
		logf("%d connections open (%.0f/s), %d in flight, %d failed, %d unexpected closes, %d retransmissions, paused %.1f s",
			st.Live, float64(st.Opened)/time.Since(openStart).Seconds(), st.InFlight, st.Failed, st.Unexpected, st.Retransmits, float64(st.PausedMs)/1000)
	})
	openErr := e.Open(gctx)
	stopLog()
	st := e.Stats()
	r.OpenSeconds = time.Since(openStart).Seconds()
	r.Connected, r.Failed = int(st.Opened), int(st.Failed)
	r.OpenRate = float64(st.Opened) / r.OpenSeconds
	r.TUN.DropsOpen = deviceDrops(cfg.TUN)
	logf("%d connected, %d failed, in %.1f s (%.0f/s); %d packets dropped by the device's queue", r.Connected, r.Failed, r.OpenSeconds, r.OpenRate, r.TUN.DropsOpen)
	if cfg.OpenMinIdle > 0 {
		logf("the open waited %.1f s for the machine to be %.0f%% idle", float64(st.PausedMs)/1000, cfg.OpenMinIdle)
	}
	if st.FirstError != "" {
		logf("first error: %s", st.FirstError)
	}
	if openErr == nil && r.Connected == 0 {
		openErr = fmt.Errorf("load: no connection succeeded: %s", st.FirstError)
	}
	if openErr == nil {
		stopLog = logEvery(30*time.Second, func() {
			st := e.Stats()
			logf("%d live, %d unexpected closes, %d pings answered, %d retransmissions", st.Live, st.Unexpected, st.Pings, st.Retransmits)
		})
		openErr = measureHold(gctx, cfg, r, before, []int{os.Getpid()}, logf)
		stopLog()
	}
	r.TUN.AtHoldEnd = e.Stats()
	r.TUN.DropsHold = deviceDrops(cfg.TUN)
	r.Disconnected = r.TUN.AtHoldEnd.Unexpected

	if cfg.StopCmd != "" {
		r.TUN.Stop = stopServer(ctx, e, cfg.StopCmd, logf)
	} else {
		// The orderly close runs even after an error: the gateway sees
		// normal closes instead of connections left to its idle timeout.
		closeOrderly(e, cfg, r, logf)
	}
	r.TUN.Stats = e.Stats()
	r.TUN.DropsEnd = deviceDrops(cfg.TUN)
	if cause := context.Cause(gctx); errors.Is(cause, errLowMemory) {
		openErr = cause
	}
	return r, openErr
}

// closeOrderly closes every client at cfg.CloseRate (at most 10 minutes)
// and notes how long it took and its error in r.TUN.
func closeOrderly(e *tunclient.Engine, cfg Config, r *Result, logf func(string, ...any)) {
	logf("closing %d connections at %.0f/s", r.TUN.AtHoldEnd.Live, cfg.CloseRate)
	closeStart := time.Now()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer ccancel()
	stopLog := logEvery(time.Second, func() {
		st := e.Stats()
		logf("closing: %d closed, %d live, %d unexpected, %d retransmissions", st.Closed, st.Live, st.Unexpected, st.Retransmits)
	})
	err := e.Close(cctx, cfg.CloseRate)
	stopLog()
	if err != nil {
		r.TUN.CloseErr = err.Error()
		logf("%v", err)
	}
	r.TUN.CloseSeconds = time.Since(closeStart).Seconds()
	logf("closed %d in %.1f s", e.Stats().Closed, r.TUN.CloseSeconds)
}

// deviceDrops reads the TUN device's tx_dropped counter (packets for
// the reader the queue had no room for); -1 when it cannot be read.
func deviceDrops(dev string) int64 {
	b, err := os.ReadFile("/sys/class/net/" + dev + "/statistics/tx_dropped")
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// logEvery calls f every d until stop is called.
func logEvery(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(done); <-finished }
}

func closeDevs(devs []*tunclient.Device) {
	for _, d := range devs {
		_ = d.Close()
	}
}
