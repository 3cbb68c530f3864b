package load

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleGate tells an open to wait while the machine is too busy: it
// samples /proc/stat every period and is closed (Paused returns true)
// while the share of the machine's CPU left idle over the last period is
// below minIdle. The clients of a C1M run stand for other machines; an
// open that takes every cycle the idle connections leave starves the
// node's heartbeats and the clients' own TCP, and a box with no slack
// tips on the next burst (docs/benchmarks.md, C1M round 7).
type idleGate struct {
	minIdle float64
	paused  atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// idleGatePeriod is how often the gate samples the machine.
const idleGatePeriod = 250 * time.Millisecond

// startIdleGate starts a gate for minIdle (a fraction, 0 to 1); Stop
// ends its sampler.
func startIdleGate(minIdle float64) *idleGate {
	g := &idleGate{minIdle: minIdle, stop: make(chan struct{})}
	g.wg.Go(g.run)
	return g
}

func (g *idleGate) run() {
	t := time.NewTicker(idleGatePeriod)
	defer t.Stop()
	prev, err := ReadBoxCPU()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		cur, cerr := ReadBoxCPU()
		if err == nil && cerr == nil {
			g.paused.Store(tooBusy(prev, cur, g.minIdle))
		}
		prev, err = cur, cerr
	}
}

// tooBusy tells whether less than minIdle of the CPU time between two
// samples was idle.
func tooBusy(prev, cur BoxCPU, minIdle float64) bool {
	total := cur.Total - prev.Total
	if total <= 0 {
		return false
	}
	idle := float64(total-(cur.Busy-prev.Busy)) / float64(total)
	return idle < minIdle
}

// Paused reports whether the last sample was too busy.
func (g *idleGate) Paused() bool { return g.paused.Load() }

// Stop ends the sampler and waits for it.
func (g *idleGate) Stop() {
	close(g.stop)
	g.wg.Wait()
}
