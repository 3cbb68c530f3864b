package gateway

import (
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
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
	pressureEvery = 5 * time.Millisecond
	// pressureConnsPerTick is how many connections one sample may scan
	// per pressureEvery; with more, the period grows in proportion.
	pressureConnsPerTick = 20_000
)

// pressure is the gateway's view of its outbound backlog.
type pressure struct {
	queued   atomic.Int64  // the last sample of the bytes queued for clients
	over     atomic.Bool   // announced overloaded (soft bound passed)
	refusing atomic.Bool   // the hard bound was passed since the last log line
	refused  atomic.Uint64 // sends refused at the hard bound
	cmds     chan *nats.Msg

	// sendOut is the bytes the command being executed queued for
	// clients; avgOut the moving average of it over the commands (both
	// kept by the command goroutine; avgOut read by the sampler).
	sendOut int64
	avgOutF float64
	avgOut  atomic.Int64
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
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		q, conns := s.sampleQueued()
		s.press.queued.Store(q)
		s.updatePressure(s.press.backlog(), s.press.cmdsWaiting())
		t.Reset(pressureEvery * time.Duration(max(1, conns/pressureConnsPerTick)))
	}
}

// sampleQueued returns the bytes queued for the open connections and not
// yet written, and the connections scanned (or skipped: an empty shard
// that queued nothing since its last sample is not scanned again).
func (s *Server) sampleQueued() (total int64, conns int) {
	for _, sh := range s.shards {
		sh.mu.Lock()
		if sh.sampledQueued != 0 || sh.msgsOut != sh.sampledMsgs {
			var q int64
			for _, c := range sh.order {
				if c.state != stateClosed {
					q += int64(len(c.out)) + c.unsent.Load()
				}
			}
			sh.sampledQueued, sh.sampledMsgs = q, sh.msgsOut
			conns += len(sh.order)
		}
		total += sh.sampledQueued
		sh.mu.Unlock()
	}
	return total, conns
}

// updatePressure moves the overloaded flag by the backlog of q bytes
// (queued and to come) and cmds commands waiting, announcing each change
// in a heartbeat.
func (s *Server) updatePressure(q int64, cmds int) {
	soft := s.cfg.MaxQueuedBytes
	if soft < 0 {
		return
	}
	over := s.press.over.Load()
	switch {
	case !over && (q >= soft || cmds >= s.cmdQueueLen/4):
		s.press.over.Store(true)
		s.log.Warn("gateway overloaded: API clients refuse new sends", "backlog_bytes", q, "queued_bytes", s.press.queued.Load(),
			"commands_waiting", cmds, "max_queued_bytes", soft)
		s.heartbeat(false)
	case over && q < soft/2 && cmds < s.cmdQueueLen/16:
		s.press.over.Store(false)
		refused := s.press.refused.Load()
		s.press.refusing.Store(false)
		s.log.Info("gateway no longer overloaded", "backlog_bytes", q, "sends_refused_total", refused)
		s.heartbeat(false)
	}
}

// refuseSend reports whether a send must be refused at the hard bound,
// counting it.
func (s *Server) refuseSend() bool {
	hard := s.cfg.MaxQueuedBytes
	if hard < 0 || (s.press.backlog() < 2*hard && s.press.cmdsWaiting() < s.cmdQueueLen/2) {
		return false
	}
	s.press.refused.Add(1)
	if s.press.refusing.CompareAndSwap(false, true) {
		s.log.Warn("gateway refuses sends: backlog past twice max_queued_bytes", "queued_bytes", s.press.queued.Load(),
			"backlog_bytes", s.press.backlog(),
			"commands_waiting", s.press.cmdsWaiting(), "max_queued_bytes", hard)
	}
	return true
}

// errOverloaded answers a refused send.
var errOverloaded = &errCode{code: bus.ErrCodeOverloaded, msg: "gateway overloaded: send refused, retry later"}
