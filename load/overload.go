package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// OverloadResult is what the overload workload measured: closed-loop
// publishers against a group, the node's memory, and every message sent
// accounted for (delivered, refused, or counted as dropped by the node).
type OverloadResult struct {
	// Accepted sends (2xx) and refused ones (503 overloaded), and other
	// failed calls.
	Accepted uint64 `json:"accepted"`
	Refused  uint64 `json:"refused"`
	Errors   uint64 `json:"errors"`
	// SendsPerSec is accepted sends per second of the run.
	SendsPerSec float64 `json:"sends_per_sec"`
	// Expected is Accepted × members; Delivered arrived at the clients
	// by the end of the drain; Lost is the difference.
	Expected  uint64 `json:"expected"`
	Delivered uint64 `json:"delivered"`
	Lost      int64  `json:"lost"`
	// The node's own counts over the run (from /metrics; -1 when not
	// read): sends it refused after the API accepted them (each one lost
	// for every member), messages dropped at a connection's queue bound,
	// slow consumers on its bus connection.
	NodeSendsRefused int64 `json:"node_sends_refused"`
	NodeDropped      int64 `json:"node_dropped"`
	NodeBusSlow      int64 `json:"node_bus_slow_consumers"`
	// Unaccounted is Lost minus what the node counted (NodeSendsRefused ×
	// members + NodeDropped): deliveries lost with nobody counting them.
	Unaccounted int64 `json:"unaccounted"`
	// DeliveriesPerSec is Delivered over the run and drain.
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// Latency from the send call's start to the delivery.
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	// RSS of the node's processes (the one listening on the WebSocket
	// address and its descendants: worker processes) summed, before the
	// run, at its peak (sampled every 100 ms) and at the end of the drain.
	PIDs         []int `json:"pids"`
	RSSIdleKiB   int64 `json:"rss_idle_kib"`
	RSSPeakKiB   int64 `json:"rss_peak_kib"`
	RSSEndKiB    int64 `json:"rss_end_kib"`
	RSSGrowthKiB int64 `json:"rss_growth_kib"` // peak − idle
	DrainMs      int64 `json:"drain_ms"`       // from the end of sending to the last delivery counted
}

// sendOutcome is one send's answer.
type sendOutcome int

const (
	sendOK sendOutcome = iota
	sendRefused
	sendFailed
)

// sendToGroupOnce posts one stamped message to the group and classifies
// the answer; for a refusal it returns the Retry-After the node asked for.
func (a *apiClient) sendToGroupOnce(ctx context.Context, size int) (sendOutcome, time.Duration) {
	b, _ := json.Marshal(map[string]any{"group": BenchGroup, "message": string(stamped(size))})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"sendToGroup", bytes.NewReader(b))
	if err != nil {
		return sendFailed, 0
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return sendFailed, 0
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return sendOK, 0
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
		wait := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			wait = time.Duration(s) * time.Second
		}
		return sendRefused, wait
	}
	return sendFailed, 0
}

// runOverload joins the connections to the group, then has cfg.Senders
// closed-loop publishers call sendToGroup as fast as they get answers for
// cfg.Duration (after a refusal a publisher waits cfg.RetryWait, or the
// Retry-After the node answered when that is 0), then waits for the
// deliveries to stop (at most 30 s) and accounts for every message.
func runOverload(ctx context.Context, cfg Config, r *Result, children []*child, addrs []string, logf func(string, ...any)) error {
	a := newAPIClient(cfg.HTTPAddr, cfg.Token, max(cfg.Senders, 16))
	defer a.close()
	r.Members, r.Sender, r.Senders = r.Connected, "http", cfg.Senders
	if !cfg.Bare {
		n, err := joinAll(ctx, a, addrs, logf)
		if err != nil {
			return err
		}
		r.Members = n
	} else if err := waitBareCount(ctx, a, len(addrs)); err != nil {
		return err
	}
	o := &OverloadResult{NodeSendsRefused: -1, NodeDropped: -1, NodeBusSlow: -1}
	r.Overload = o
	pid := cfg.PID
	if pid == 0 {
		p, err := FindListenerPID(cfg.WSAddr)
		if err != nil {
			return fmt.Errorf("%w (give --pid)", err)
		}
		pid = p
	}
	o.PIDs = []int{pid}
	if !cfg.Bare { // the bare server's process also holds the client processes
		o.PIDs = withDescendants(pid)
	}
	o.RSSIdleKiB = sumRSS(o.PIDs)
	before, berr := readNodeCounters(ctx, cfg)

	for _, c := range children {
		if err := c.send(childCmd{Cmd: "reset"}); err != nil {
			return fmt.Errorf("load: command child: %w", err)
		}
	}
	for _, c := range children {
		if _, err := c.recv(ctx, "reset", nil); err != nil {
			return err
		}
	}
	var peak atomic.Int64
	peak.Store(o.RSSIdleKiB)
	sampleDone := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleDone:
				return
			case <-tick.C:
				if kib := sumRSS(o.PIDs); kib > peak.Load() {
					peak.Store(kib)
				}
			}
		}
	})
	defer func() {
		select {
		case <-sampleDone:
		default:
			close(sampleDone)
		}
		sampler.Wait()
	}()

	logf("overload: %d closed-loop publishers to %d members for %s", cfg.Senders, r.Members, cfg.Duration)
	var accepted, refused, failed atomic.Uint64
	// A send started before the end is let finish (not canceled), so that
	// its outcome is known: a canceled call may still have been accepted.
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	t0 := time.Now()
	var wg sync.WaitGroup
	for range cfg.Senders {
		wg.Go(func() {
			for runCtx.Err() == nil {
				switch out, wait := a.sendToGroupOnce(ctx, cfg.MsgSize); out {
				case sendOK:
					accepted.Add(1)
				case sendRefused:
					refused.Add(1)
					if cfg.RetryWait > 0 {
						wait = cfg.RetryWait
					}
					_ = sleepCtx(runCtx, wait)
				default:
					failed.Add(1)
					_ = sleepCtx(runCtx, 10*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	sendTime := time.Since(t0)
	o.Accepted, o.Refused, o.Errors = accepted.Load(), refused.Load(), failed.Load()
	o.SendsPerSec = float64(o.Accepted) / sendTime.Seconds()
	o.Expected = o.Accepted * uint64(r.Members)
	logf("overload: sent %d (%.0f/s), %d refused, %d failed; draining", o.Accepted, o.SendsPerSec, o.Refused, o.Errors)

	var (
		h          *Histogram
		count      uint64
		lastCount  uint64
		lastGrowth = time.Now()
	)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		var err error
		h, count, _, _, err = collect(ctx, children, childCmd{Cmd: "report"})
		if err != nil {
			return err
		}
		if count != lastCount {
			lastCount, lastGrowth = count, time.Now()
		}
		if count >= o.Expected || time.Since(lastGrowth) > time.Second {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	o.DrainMs = max(0, lastGrowth.Sub(t0.Add(sendTime)).Milliseconds())
	o.Delivered = count
	o.Lost = int64(o.Expected) - int64(count)
	o.DeliveriesPerSec = float64(count) / (sendTime + time.Duration(o.DrainMs)*time.Millisecond).Seconds()
	o.P50Ms, o.P99Ms, o.P999Ms = ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Quantile(0.999))
	close(sampleDone)
	sampler.Wait()
	o.RSSPeakKiB = peak.Load()
	o.RSSEndKiB = sumRSS(o.PIDs)
	o.RSSGrowthKiB = o.RSSPeakKiB - o.RSSIdleKiB
	if after, err := readNodeCounters(ctx, cfg); err == nil && berr == nil {
		o.NodeSendsRefused = after.sendsRefused - before.sendsRefused
		o.NodeDropped = after.dropped - before.dropped
		o.NodeBusSlow = after.busSlow - before.busSlow
		o.Unaccounted = o.Lost - o.NodeSendsRefused*int64(r.Members) - o.NodeDropped
	} else {
		o.Unaccounted = o.Lost
	}
	return nil
}

// nodeCounters are the node's loss counters, from /metrics.
type nodeCounters struct {
	sendsRefused, dropped, busSlow int64
}

// readNodeCounters reads the node's loss counters from its /metrics (not
// for the bare server, which has none).
func readNodeCounters(ctx context.Context, cfg Config) (nodeCounters, error) {
	var n nodeCounters
	if cfg.Bare {
		return n, fmt.Errorf("load: the bare server has no counters")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.HTTPAddr+"/metrics", nil)
	if err != nil {
		return n, fmt.Errorf("load: metrics: %w", err)
	}
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return n, fmt.Errorf("load: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("load: metrics: %s", resp.Status)
	}
	return parseNodeCounters(io.LimitReader(resp.Body, 16<<20))
}

// parseNodeCounters sums the loss counters of a Prometheus text
// exposition (every label set of each).
func parseNodeCounters(r io.Reader) (nodeCounters, error) {
	var n nodeCounters
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		var dst *int64
		switch name {
		case "gatework_gateway_sends_refused_total":
			dst = &n.sendsRefused
		case "gatework_gateway_dropped_messages_total":
			dst = &n.dropped
		case "gatework_gateway_bus_slow_consumers_total":
			dst = &n.busSlow
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
		if err != nil {
			return n, fmt.Errorf("load: metrics: %s: %w", name, err)
		}
		*dst += int64(v)
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("load: metrics: read: %w", err)
	}
	return n, nil
}

// withDescendants returns pid and every process descended from it (a
// node's worker processes), by the parent pids in /proc/*/stat.
func withDescendants(pid int) []int {
	parent := map[int]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		p, _ := strconv.Atoi(strings.Split(d, "/")[2])
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	out := []int{pid}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if contains(out, pp) && !contains(out, p) {
				out = append(out, p)
				changed = true
			}
		}
	}
	return out
}

func contains(list []int, x int) bool {
	for _, v := range list {
		if v == x {
			return true
		}
	}
	return false
}

// sumRSS sums the VmRSS of pids (processes gone count 0).
func sumRSS(pids []int) int64 {
	var kib int64
	for _, p := range pids {
		if s, err := ReadProcStats(p); err == nil {
			kib += s.RSSKiB
		}
	}
	return kib
}
