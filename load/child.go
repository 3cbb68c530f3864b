package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lesismal/nbio"
)

// ChildConfig is what the parent gives one child: its share of the
// connections. It travels as JSON on the child's command line.
type ChildConfig struct {
	Workload    Workload `json:"workload"`
	URL         string   `json:"url"`
	Conns       int      `json:"conns"`
	Offset      int      `json:"offset"` // global index of the first connection
	SrcIPs      []string `json:"src_ips,omitempty"`
	MsgSize     int      `json:"msg_size"`
	Concurrency int      `json:"concurrency"`
	Welcome     bool     `json:"welcome,omitempty"` // churn: wait for a greeting, send nothing
	Deflate     bool     `json:"deflate,omitempty"` // offer permessage-deflate (idle)
	// Rate paces the opening: connections started per second by this
	// child (see openConns); 0 means unpaced, dialParallel in flight.
	Rate float64 `json:"rate,omitempty"`
}

// childCmd is one line the parent writes to a child's stdin.
type childCmd struct {
	Cmd string        `json:"cmd"` // reset, report, run, quit
	Dur time.Duration `json:"dur,omitempty"`
}

// childMsg is one line a child writes to its stdout.
type childMsg struct {
	Type      string        `json:"type"` // progress, ready, reset (done), report
	Connected int           `json:"connected"`
	Failed    int           `json:"failed"`
	Err       string        `json:"err,omitempty"`
	Addrs     []string      `json:"addrs,omitempty"`
	Count     uint64        `json:"count"`
	Errors    uint64        `json:"errors"`
	Hist      HistogramData `json:"hist,omitempty"`
	Elapsed   time.Duration `json:"elapsed"`
}

// stats is what a child measures between two resets; Record and the
// counters are safe for concurrent use.
type stats struct {
	hist   Histogram
	count  atomic.Uint64
	errors atomic.Uint64
	start  time.Time
}

// dialParallel bounds the handshakes one child has in flight.
const dialParallel = 64

// paceBudget is how long a paced child's handshakes may take at its rate
// before they hold its dials back: the handshakes in flight are bounded
// by rate × paceBudget (at least 2, at most dialParallel), so when the
// server answers slower than the rate asks, the rate drops instead of
// the handshakes piling up (with tens of children, thousands in flight
// kept every core busy and starved the open clients' pongs).
const paceBudget = 100 * time.Millisecond

// pacer hands out dial start times at most rate per second: each slot is
// one interval after the previous one or now, whichever is later, so a
// stall is not made up with a burst. Safe for concurrent use.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newPacer(rate float64) *pacer {
	return &pacer{interval: time.Duration(float64(time.Second) / rate)}
}

// slot returns when the next dial may start.
func (p *pacer) slot(now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(p.interval)
	return at
}

// wait sleeps until the next slot, or until ctx ends (false).
func (p *pacer) wait(ctx context.Context) bool {
	d := time.Until(p.slot(time.Now()))
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dialers returns how many handshakes a child opening at rate per second
// keeps in flight (rate 0: unpaced).
func dialers(rate float64) int {
	if rate <= 0 {
		return dialParallel
	}
	return min(max(int(math.Ceil(rate*paceBudget.Seconds())), 2), dialParallel)
}

// RunChild runs one child: it opens its connections, reports "ready" on
// out, then obeys the commands read from in (one JSON childCmd per line)
// until in ends or says quit, and closes every connection before it
// returns. `gwload child` calls it with stdin and stdout; tests call it in a
// goroutine with pipes. It blocks until done.
func RunChild(ctx context.Context, cfg ChildConfig, in io.Reader, out io.Writer) error {
	need := cfg.Conns
	if cfg.Workload == Churn {
		need = cfg.Concurrency
	}
	if err := raiseNoFile(need + 64); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var outMu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(m childMsg) error {
		outMu.Lock()
		defer outMu.Unlock()
		return enc.Encode(m)
	}
	var cur atomic.Pointer[stats]
	cur.Store(&stats{start: time.Now()})

	// The event loops start first and take each connection as soon as
	// its handshake is done: a connection answers the server's pings
	// while the others are still dialing (with tens of thousands to
	// open, the first would otherwise reach the server's idle timeout).
	var (
		pc      *pollClient
		adopted []*nbio.Conn
		addrs   []string
		adoptMu sync.Mutex
	)
	var adopt func(c *wsConn) error
	if cfg.Workload != Churn {
		var err error
		if pc, err = newPollClient(&cur, cfg.Workload != Idle, cfg.MsgSize); err != nil {
			return err
		}
		defer pc.stop()
		adopted = make([]*nbio.Conn, 0, cfg.Conns)
		adopt = func(c *wsConn) error {
			addr := c.LocalAddr()
			nc, err := pc.adopt(c)
			if err != nil {
				_ = c.Close()
				return err
			}
			adoptMu.Lock()
			adopted = append(adopted, nc)
			if cfg.Workload == FanOut || cfg.Workload == Overload {
				addrs = append(addrs, addr)
			}
			adoptMu.Unlock()
			return nil
		}
	}
	connected, failed, firstErr := openConns(ctx, cfg, adopt, func(n int) {
		_ = emit(childMsg{Type: "progress", Connected: n})
	})
	ready := childMsg{Type: "ready", Connected: connected, Failed: failed, Addrs: addrs}
	if firstErr != nil {
		ready.Err = firstErr.Error()
	}
	if err := emit(ready); err != nil {
		return fmt.Errorf("load: child output: %w", err)
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var cmd childCmd
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			return fmt.Errorf("load: child command %q: %w", sc.Text(), err)
		}
		switch cmd.Cmd {
		case "reset":
			cur.Store(&stats{start: time.Now()})
			if err := emit(childMsg{Type: "reset"}); err != nil {
				return err
			}
		case "report":
			if err := emit(report(cur.Load())); err != nil {
				return err
			}
		case "run":
			s := &stats{start: time.Now()}
			cur.Store(s)
			if cfg.Workload == Churn {
				runChurn(ctx, cfg, cmd.Dur, s)
			} else {
				pc.runEcho(ctx, adopted, cmd.Dur, s)
			}
			if err := emit(report(s)); err != nil {
				return err
			}
		case "quit":
			return nil
		default:
			return fmt.Errorf("load: unknown child command %q", cmd.Cmd)
		}
	}
	return sc.Err()
}

func report(s *stats) childMsg {
	return childMsg{Type: "report", Count: s.count.Load(), Errors: s.errors.Load(),
		Hist: s.hist.Data(), Elapsed: time.Since(s.start)}
}

// raiseNoFile raises the soft open-file limit to the hard one and fails
// clearly when even that is below need.
func raiseNoFile(need int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("load: read open-file limit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if rl.Cur < uint64(need) {
		return fmt.Errorf("load: open-file limit %d is too low for %d connections in one process: run `ulimit -n 20000` or use a lower --per-proc", rl.Cur, need-64)
	}
	return nil
}

// openConns opens cfg.Conns connections (none for churn), paced at
// cfg.Rate per second with dialers(cfg.Rate) handshakes in flight (or
// dialParallel at a time, unpaced, when cfg.Rate is 0), hands each to
// adopt as soon as its handshake is done, and reports progress every
// 1,000. It returns how many were opened and adopted, how
// many failed, and the first error.
func openConns(ctx context.Context, cfg ChildConfig, adopt func(*wsConn) error, progress func(int)) (int, int, error) {
	if cfg.Workload == Churn {
		return 0, 0, nil
	}
	var (
		mu        sync.Mutex
		connected int
		failed    int
		firstErr  error
		next      atomic.Int64
		wg        sync.WaitGroup
	)
	var pace *pacer
	if cfg.Rate > 0 {
		pace = newPacer(cfg.Rate)
	}
	for range min(dialers(cfg.Rate), cfg.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.Conns || ctx.Err() != nil {
					return
				}
				if pace != nil && !pace.wait(ctx) {
					return
				}
				c, err := dialWS(ctx, cfg.URL, srcFor(cfg.SrcIPs, cfg.Offset+i), cfg.Deflate)
				if err == nil {
					err = adopt(c)
				}
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					connected++
					if connected%1000 == 0 {
						progress(connected)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return connected, failed, firstErr
}

func srcFor(ips []string, i int) string {
	if len(ips) == 0 {
		return ""
	}
	return ips[i%len(ips)]
}

// runChurn runs cfg.Concurrency loops of connect, one echo (or, with
// cfg.Welcome, the server's first message), close until d has passed; each
// cycle's time goes into the histogram.
func runChurn(ctx context.Context, cfg ChildConfig, d time.Duration, s *stats) {
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range cfg.Concurrency {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				start := time.Now()
				if err := churnOnce(ctx, cfg, srcFor(cfg.SrcIPs, cfg.Offset+int(seq.Add(1)))); err != nil {
					s.errors.Add(1)
					continue
				}
				s.hist.Record(time.Since(start))
				s.count.Add(1)
			}
		})
	}
	wg.Wait()
}

func churnOnce(ctx context.Context, cfg ChildConfig, src string) error {
	c, err := dialWS(ctx, cfg.URL, src, false)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if !cfg.Welcome {
		if err := c.writeText(stamped(cfg.MsgSize)); err != nil {
			return err
		}
	}
	_, err = c.readMessage()
	return err
}
