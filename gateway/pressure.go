package gateway

import (
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/phase"
)

// Back-pressure on sends (Config.MaxQueuedBytes; docs/operations.md,
// "Overload"). A send to a group of N members costs N frames in the
// connections' queues while the command that carried it is a few hundred
// bytes: an API caller that does not wait for the deliveries can queue
// gigabytes (issue 19: 8 HTTP callers built 2.1 GB and 32 s of latency for
// 2,000 clients). So the gateway watches its outbound backlog, the bytes
// queued for all its clients plus the commands waiting in its command
// queue, and
//
//   - past MaxQueuedBytes (or a quarter of the command queue) announces
//     itself overloaded in a heartbeat, published at once: API clients then
//     refuse new sends with api.ErrOverloaded (HTTP 503 with Retry-After)
//     before they reach the bus, until a heartbeat under half the bound
//     clears it (hysteresis, so the flag does not flap per message);
//   - past twice the bound (or half the command queue) refuses the sends
//     that reach it anyway, counted (Stats.SendsRefused) and answered with
//     bus.ErrCodeOverloaded when they carry a reply subject: the ones that
//     were on their way when the heartbeat went out, and those of callers
//     that do not use an API client.
//
// The commands waiting count too, by what they will queue: a send waiting
// in the command queue costs nothing yet, but 16,384 sends to 2,000
// members are 3.5 GB to come. The command goroutine keeps a moving average
// of the bytes each command queued for clients (acks and queries count 0;
// noteCommand), and the backlog is the bytes queued plus the commands
// waiting times that average.
//
// The backlog is sampled, not counted per frame: a per-frame shared
// counter would cost an atomic add per delivery on the fan-out path, and
// the drops, kills and socket closes would each have to keep it exact.
// pressureLoop sums each open connection's queue (len(out) plus unsent,
// as Stats.QueuedBytes does) every pressureEvery, skipping a shard that
// was empty and has queued nothing since; the period grows with the
// connections (pressureConnsPerTick per tick) so that the scan stays
// under about 1 % of a core. A send executed between two samples is not
// refused: the soft bound leaves room for it.

const (
	// pressureEvery is the sampling period up to pressureConnsPerTick
	// connections.
	pressureEvery = 10 * time.Millisecond
	// pressureConnsPerTick is how many connections one sample may scan
	// per pressureEvery; with more, the period grows in proportion. A
	// scan reads each connection's struct, a cache miss (about 80 ns)
	// once the connections outgrow the caches: 1,000 per 10 ms keeps the
	// sampler under 1 % of a core at any count (20 ms at 2,000
	// connections, 1 s at 100,000). What the sampler is slow to see, the
	// commands waiting, is read at each send (refuseSend, Overloaded).
	pressureConnsPerTick = 1_000
	// pressureIdleMax is the longest sampling period of an idle gateway
	// (nothing queued and nothing sent since the last sample, no command
	// waiting): the period doubles from pressureEvery up to it, and the
	// next command or ack wakes the sampler at once (noteCommand). An
	// idle sampler's timer is put on wall-clock boundaries
	// (internal/phase), with the heartbeat and the membership sweep: an
	// idle gateway process wakes a few times a second for all of them,
	// not 100 times for the sampler alone; tens of gateway processes of
	// one node paid for those wake-ups.
	pressureIdleMax = time.Second
)

// pressurePeriod returns the wait before the next sample, and the idle
// period to remember, after a sample that scanned conns connections (0:
// every shard was empty and sent nothing since the previous sample) with
// waiting commands waiting, the previous idle period having been
// idleFor (0: not idle).
func pressurePeriod(conns, waiting int, idleFor time.Duration) (time.Duration, time.Duration) {
	if conns == 0 && waiting == 0 {
		idleFor = min(max(2*idleFor, 2*pressureEvery), pressureIdleMax)
		return idleFor, idleFor
	}
	return pressureEvery * time.Duration(max(1, conns/pressureConnsPerTick)), 0
}

// pressure is the gateway's view of its outbound backlog.
type pressure struct {
	queued   atomic.Int64  // the last sample of the bytes queued for clients
	over     atomic.Bool   // announced overloaded (soft bound passed)
	refusing atomic.Bool   // the hard bound was passed since the last log line
	refused  atomic.Uint64 // sends refused at the hard bound
	cmds     chan *nats.Msg
	// idle is set while the sampler waits longer than pressureEvery
	// (pressurePeriod); the next command clears it and wakes the sampler
	// through wake (capacity 1).
	idle atomic.Bool
	wake chan struct{}

	// sendOut is the bytes the command being executed queued for
	// clients; avgOut the moving average of it over the commands (both
	// kept by the command goroutine; avgOut read by the sampler).
	sendOut int64
	avgOutF float64
	avgOut  atomic.Int64
	// delay is the time to write the backlog at the recent write rate
	// (nanoseconds; 0 while unknown), set by the sampler.
	delay atomic.Int64
}

// avgWeight is the weight of one command in the moving average of the
// bytes a command queues, when it queued less than the average: the last
// hundred or so commands count.
const avgWeight = 1.0 / 64

// noteCommand folds the command just executed into the moving average,
// which rises at once to a command that queued more (the estimate errs
// on the side of overload: the first sends of a burst are counted at
// their size, not a fraction of it) and decays slowly. Command goroutine
// only.
func (p *pressure) noteCommand() {
	if out := float64(p.sendOut); out > p.avgOutF {
		p.avgOutF = out
	} else {
		p.avgOutF += (out - p.avgOutF) * avgWeight
	}
	p.sendOut = 0
	p.avgOut.Store(int64(p.avgOutF))
	if p.idle.Load() && p.idle.CompareAndSwap(true, false) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// backlog is the bytes queued for clients (the last sample) plus what
// the commands waiting will queue (estimated).
func (p *pressure) backlog() int64 {
	return p.queued.Load() + int64(p.cmdsWaiting())*p.avgOut.Load()
}

// cmdsWaiting returns the commands waiting in the ordered command queue.
func (p *pressure) cmdsWaiting() int { return len(p.cmds) }

// pressureLoop samples the backlog until the gateway stops.
func (s *Server) pressureLoop() {
	t := time.NewTimer(pressureEvery)
	defer t.Stop()
	var (
		prevOut    uint64
		prevT      time.Time
		prevQueued int64
		rate       float64 // bytes written per second while there was a backlog (moving average)
		samples    int     // of rate, up to minRateSamples
		idleFor    time.Duration
	)
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		case <-s.press.wake:
		}
		q, active, out, conns := s.sampleQueued()
		now := time.Now()
		if prevQueued > 0 && !prevT.IsZero() {
			inst := float64(out-prevOut) / now.Sub(prevT).Seconds()
			rate += (inst - rate) / float64(min(samples+1, rateSamples))
			samples = min(samples+1, rateSamples)
		}
		prevOut, prevT, prevQueued = out, now, q
		s.press.queued.Store(q)
		b := s.press.backlog()
		// The delay is that of the backlog the gateway can write now: the
		// bytes of connections whose sockets take them, and what the
		// commands waiting will queue. A client that stops reading fills
		// its socket buffer and then holds its queue, written at rate 0:
		// that is its own bound's business (max_queue_bytes and the queue
		// policy), and counting it here would let a few such clients make
		// the gateway refuse every send. Their bytes still count in b
		// against MaxQueuedBytes (memory is memory).
		var delay time.Duration
		if ab := active + (b - q); rate > 0 && samples >= rateSamples && ab >= s.cfg.MaxQueuedBytes/minDelayBacklog {
			delay = time.Duration(float64(ab) / rate * float64(time.Second))
		}
		s.press.delay.Store(int64(delay))
		waiting := s.press.cmdsWaiting()
		s.updatePressure(b, delay, waiting)
		var next time.Duration
		next, idleFor = pressurePeriod(conns, waiting, idleFor)
		s.press.idle.Store(idleFor > 0)
		if idleFor > 0 {
			next = phase.Until(next)
		}
		t.Reset(next)
	}
}

// rateSamples is the span of the moving average of the write rate, in
// samples taken while there was a backlog (the last 160 ms of writing
// or more); the delay bound applies once that many were taken, so that
// the first samples of the first burst (the flushers not yet scheduled)
// do not read as a rate near zero. The average spans idle periods: the
// write capacity does not change when nothing is queued.
const rateSamples = 16

// minDelayBacklog is the least backlog the delay bound applies to, as a
// fraction of MaxQueuedBytes: a few stuck clients holding their queues
// (written at rate 0) must not make the whole gateway overloaded.
const minDelayBacklog = 8

// sampleQueued returns the bytes queued for the open connections and not
// yet written, the part of them queued for connections with nothing
// pending in the socket engine (whose sockets take what they are given),
// the bytes written to sockets so far, and the connections scanned (an
// empty shard that queued nothing since its last sample is not scanned
// again).
func (s *Server) sampleQueued() (total, active int64, written uint64, conns int) {
	for _, sh := range s.shards {
		sh.mu.Lock()
		if sh.sampledQueued != 0 || sh.msgsOut != sh.sampledMsgs {
			var q, a int64
			for _, c := range sh.order {
				if c.state != stateClosed {
					unsent := c.unsent.Load()
					q += int64(len(c.out)) + unsent
					if unsent == 0 {
						a += int64(len(c.out))
					}
				}
			}
			sh.sampledQueued, sh.sampledActive, sh.sampledMsgs = q, a, sh.msgsOut
			conns += len(sh.order)
		}
		total += sh.sampledQueued
		active += sh.sampledActive
		sh.mu.Unlock()
		written += sh.bytesOut.Load()
	}
	return total, active, written, conns
}

// pastBound reports whether a backlog of b bytes (queued and to come),
// the delay to write it and cmds commands waiting are past f times the
// bounds: MaxQueuedBytes, MaxQueueDelay (for a backlog of at least
// 1/minDelayBacklog of MaxQueuedBytes) and a quarter of the command
// queue. A bound that is off (negative) is never past.
func (s *Server) pastBound(f float64, b int64, delay time.Duration, cmds int) bool {
	maxB, maxD := s.cfg.MaxQueuedBytes, s.cfg.MaxQueueDelay
	switch {
	case maxB > 0 && float64(b) >= f*float64(maxB):
		return true
	case maxD > 0 && float64(delay) >= f*float64(maxD) && (maxB <= 0 || b >= maxB/minDelayBacklog):
		return true
	}
	return s.cmdQueueLen > 0 && float64(cmds) >= f*float64(s.cmdQueueLen/4) // 0 until Start
}

// updatePressure moves the overloaded flag by the backlog of b bytes
// (queued and to come), the delay to write them and cmds commands
// waiting, announcing each change in a heartbeat: set past the bounds,
// cleared under half of each. The sampler calls it, and the command
// goroutine before each send (refuseSend).
func (s *Server) updatePressure(b int64, delay time.Duration, cmds int) {
	over := s.press.over.Load()
	switch {
	case !over && s.pastBound(1, b, delay, cmds):
		if !s.press.over.CompareAndSwap(false, true) {
			return // the other goroutine set it
		}
		s.log.Warn("gateway overloaded: API clients refuse new sends", "backlog_bytes", b, "queued_bytes", s.press.queued.Load(),
			"delay", delay.Round(time.Millisecond), "commands_waiting", cmds,
			"max_queued_bytes", s.cfg.MaxQueuedBytes, "max_queue_delay", s.cfg.MaxQueueDelay)
		s.heartbeat(false)
	case over && !s.pastBound(0.5, b, delay, cmds):
		if !s.press.over.CompareAndSwap(true, false) {
			return
		}
		refused := s.press.refused.Load()
		s.press.refusing.Store(false)
		s.log.Info("gateway no longer overloaded", "backlog_bytes", b, "delay", delay.Round(time.Millisecond), "sends_refused_total", refused)
		s.heartbeat(false)
	}
}

// refuseSend reports whether a send must be refused, past twice the
// bounds, counting it.
func (s *Server) refuseSend() bool {
	if !s.pressureOn() {
		return false
	}
	b, delay, cmds := s.press.backlog(), time.Duration(s.press.delay.Load()), s.press.cmdsWaiting()
	if !s.press.over.Load() && s.pastBound(1, b, delay, cmds) {
		// The sampler may lag (a starved goroutine, or a period grown
		// with the connections) while sends pile up in the command
		// queue: what this goroutine sees sets the flag too.
		s.updatePressure(b, delay, cmds)
	}
	if !s.pastBound(2, b, delay, cmds) {
		return false
	}
	s.press.refused.Add(1)
	if s.press.refusing.CompareAndSwap(false, true) {
		s.log.Warn("gateway refuses sends: backlog past twice its bound", "backlog_bytes", b, "queued_bytes", s.press.queued.Load(),
			"delay", delay.Round(time.Millisecond), "commands_waiting", cmds,
			"max_queued_bytes", s.cfg.MaxQueuedBytes, "max_queue_delay", s.cfg.MaxQueueDelay)
	}
	return true
}

// Overloaded reports whether the gateway is overloaded now: its flag
// (Stats.Overloaded, what its heartbeats say) or, fresher than the
// sampler, its backlog with the commands waiting at this instant past
// the bounds. It costs a few atomic loads. Safe for concurrent use.
func (s *Server) Overloaded() bool {
	if s.press.over.Load() {
		return true
	}
	return s.pressureOn() && s.pastBound(1, s.press.backlog(), time.Duration(s.press.delay.Load()), s.press.cmdsWaiting())
}

// pressureOn reports whether back-pressure is on: at least one of
// MaxQueuedBytes and MaxQueueDelay is.
func (s *Server) pressureOn() bool { return s.cfg.MaxQueuedBytes > 0 || s.cfg.MaxQueueDelay > 0 }

// errOverloaded answers a refused send.
var errOverloaded = &errCode{code: bus.ErrCodeOverloaded, msg: "gateway overloaded: send refused, retry later"}
