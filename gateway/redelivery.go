package gateway

import (
	"math/rand/v2"
	"strings"
	"time"

	"github.com/gatework/gatework/bus"
)

// Redelivery of event batches and the gateway's in-flight window.
//
// A delivery fails when it gets no final ack and no progress for
// EventTimeout, or when a worker nacks it. After a timeout the batch waits
// a back-off (RedeliveryBackoff, doubled per failure up to
// RedeliveryBackoffMax, with jitter) and is published again with
// attempt+1; a progress ack during the wait calls the redelivery off (a
// worker has the batch after all), a final ack completes it. After a nack
// the batch is published again at once. When the failed delivery was the
// MaxDeliveries-th, the gateway gives up: it publishes a bus.DeadLetter,
// and the client's next batch goes out (DeadLetterPolicy may close the
// client too). A client has one batch in flight at a time, so its later
// events wait for this one to be acked or dead-lettered: its order is kept.
//
// The in-flight window bounds the batches a gateway has out at the workers
// at once (published, neither acked nor failed): first deliveries and
// redeliveries beyond it wait in a FIFO queue at the gateway, where they
// cost no delivery. It starts at minWindow, again after each quiet spell
// (nothing in flight at a redelivery tick), and opens by one per final ack
// while batches wait (it doubles per round trip) up to MaxInFlight.
//
// A worker with no room for a batch (its backlog full) answers with a busy
// nack (bus.Ack.Busy, protocol version 3): the batch waits a short back-off
// (busyBackoff, doubled for each busy refusal of it in a row, up to
// RedeliveryBackoff, with jitter) and goes into the queue again as the same
// attempt: no delivery is spent. The window is cut at once to the batches
// still out (what the workers hold), not below minWindow. An older worker
// drops such a batch instead, so a timed-out delivery means the same: the
// window is cut to half, or to the batches still out if that is less, at
// most once per EventTimeout. After a cut the window opens by one per
// window's worth of acks only (above the size of the cut): a gateway
// probes for room a batch or so per round trip instead of doubling into
// the workers' limit again. A connect burst thus waits at the gateway
// instead of being dropped by the workers and sent again and again.

// minWindow is the smallest the in-flight window gets.
const minWindow = 16

// busyBackoff is the first wait of a batch a worker refused as busy, and
// busyCut the factor of the window's cut at the first refusal of a round.
const (
	busyBackoff = 100 * time.Millisecond
	busyCut     = 0.8
)

// maxKeptQueue is the largest array the window's queue keeps for reuse
// once empty.
const maxKeptQueue = 1024

// deliveryState is where a batch in Server.inflight is.
type deliveryState uint8

const (
	deliveryQueued  deliveryState = iota // waiting for room in the in-flight window
	deliveryOut                          // published, waiting for an ack until its deadline
	deliveryBackoff                      // failed, waiting until its deadline to go again
)

// resend is one batch to publish, with the attempt number it goes out as
// (read under infMu, published after it is released).
type resend struct {
	d       *delivery
	attempt uint32
	first   bool // its first publish: counted in Stats.EventsSent
	again   bool // a redelivery or a probe: counted in Stats.Redelivered
}

// givenUp is a batch the gateway gives up on.
type givenUp struct {
	d       *delivery
	attempt uint32
	reason  string // bus.DeadLetterTimeout or bus.DeadLetterNack
	err     string // the nack's error
	worker  string
}

// queueLocked puts d at the end of the window's queue. Callers run
// pumpLocked afterwards. Caller holds infMu.
func (s *Server) queueLocked(d *delivery) {
	d.state = deliveryQueued
	if len(s.queue) == 0 {
		// Start over at the beginning of the queue's array.
		s.queue = s.queueBase[:0]
	}
	c := cap(s.queue)
	s.queue = append(s.queue, d)
	if len(s.queue) == 1 || cap(s.queue) != c {
		// At the start of its array (reused, or new: the old one is
		// let go; pumpLocked clears the entries it takes).
		s.queueBase = s.queue
	}
	if s.redeliverIdle {
		// The redelivery ticker stopped with nothing in flight: start it.
		s.redeliverIdle = false
		select {
		case s.redeliverWake <- struct{}{}:
		default:
		}
	}
}

// redeliverIdleLocked reports whether nothing is in flight or parked, and
// if so records that the redelivery ticker stops (queueLocked restarts
// it). Caller holds infMu.
func (s *Server) redeliverIdleLocked() bool {
	if len(s.inflight) > 0 || len(s.parked) > 0 || len(s.queue) > 0 {
		return false
	}
	s.redeliverIdle = true
	// Quiet: what the window learned of the workers is stale, so the next
	// burst starts small again and opens it by one per ack.
	s.window = min(minWindow, float64(s.cfg.MaxInFlight))
	s.ssthresh = float64(s.cfg.MaxInFlight)
	return true
}

// openWindowLocked opens the window after a final ack, while batches wait
// for room: by one below ssthresh, by 1/window above it. Caller holds infMu.
func (s *Server) openWindowLocked() {
	if len(s.queue) == 0 || s.window >= float64(s.cfg.MaxInFlight) {
		return
	}
	if s.window < s.ssthresh {
		s.window++
	} else {
		s.window += 1 / s.window
	}
	s.window = min(s.window, float64(s.cfg.MaxInFlight))
}

// cutWindowLocked sets the window to w (not below minWindow) and
// remembers it as the size above which it opens slowly. Caller holds
// infMu.
func (s *Server) cutWindowLocked(w float64) {
	s.window = max(w, min(minWindow, float64(s.cfg.MaxInFlight)))
	s.ssthresh = s.window
}

// pumpLocked takes batches off the window's queue while the window has
// room, marks them out and appends them to sends for the caller to
// publish once it released infMu. Entries of batches that left the queue
// otherwise (acked, or taken back by a progress ack) are skipped. Caller
// holds infMu.
func (s *Server) pumpLocked(nowNs int64, sends []resend) []resend {
	for len(s.queue) > 0 && float64(s.outstanding) < s.window {
		d := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		if d.state != deliveryQueued || s.inflight[d.id] != d {
			continue
		}
		again := d.again
		if again {
			d.attempt++
			d.again = false
		}
		// A batch refused busy goes out as the same attempt, counted as
		// published again.
		repeat := d.repeat
		d.repeat = false
		d.state = deliveryOut
		d.deadline = nowNs + int64(s.cfg.EventTimeout)
		s.outstanding++
		// A batch resumed after it was parked goes out as the same
		// attempt and is counted neither way.
		sends = append(sends, resend{d: d, attempt: d.attempt, first: !d.sent, again: again || repeat})
		d.sent = true
	}
	if len(s.queue) == 0 && cap(s.queueBase) > maxKeptQueue {
		s.queue, s.queueBase = nil, nil // a burst's queue: let it go
	}
	return sends
}

// releaseLocked takes d out of the window's count if it was out. Caller
// holds infMu.
func (s *Server) releaseLocked(d *delivery) {
	if d.state == deliveryOut {
		s.outstanding--
		d.state = deliveryQueued // no longer out; not in the queue either once off s.inflight
	}
}

// send publishes what pumpLocked took off the queue, through the
// publisher (multi.go), which may put several in one bus message.
func (s *Server) send(sends []resend) {
	if len(sends) == 0 {
		return
	}
	for _, r := range sends {
		switch {
		case r.first:
			s.stats.eventsSent.Add(1)
		case r.again:
			s.stats.redelivered.Add(1)
		}
	}
	s.enqueueSends(sends)
}

// redeliverExpired handles the deliveries whose deadline passed: one whose
// ack timed out goes into back-off (or is given up after its last
// delivery), one whose back-off ended queues for the window. While batches
// are parked, it also probes once a second with one of them whether a
// worker has appeared.
func (s *Server) redeliverExpired(now time.Time) {
	var sends []resend
	var dead []givenUp
	timedOut := false
	nowNs := now.UnixNano()
	s.infMu.Lock()
	for id, d := range s.inflight {
		if d.state == deliveryQueued || d.deadline > nowNs {
			continue
		}
		if d.state == deliveryBackoff {
			d.again = !d.repeat // a busy refusal repeats its attempt
			s.queueLocked(d)
			continue
		}
		s.releaseLocked(d)
		s.stats.timeouts.Add(1)
		timedOut = true
		if d.attempt >= uint32(s.cfg.MaxDeliveries) {
			delete(s.inflight, id)
			dead = append(dead, givenUp{d: d, attempt: d.attempt, reason: bus.DeadLetterTimeout, worker: d.worker})
			continue
		}
		d.state = deliveryBackoff
		d.deadline = nowNs + int64(s.backoffDelay(d.attempt))
	}
	if timedOut && nowNs-s.lastCut >= int64(s.cfg.EventTimeout) {
		// The workers are behind (one drops what its backlog cannot
		// hold): fewer batches out at once, no more than they hold now.
		s.cutWindowLocked(min(s.window/2, float64(s.outstanding)))
		s.lastCut = nowNs
	}
	if len(s.parked) > 0 && now.Sub(s.lastProbe) >= time.Second {
		s.lastProbe = now
		d := s.parked[0]
		s.parked = s.parked[1:]
		if len(s.parked) == 0 {
			s.parked = nil
		}
		// The parked publish reached nobody: the probe goes out as the
		// same attempt, outside the window (one a second).
		d.parked = false
		d.state = deliveryOut
		d.deadline = nowNs + int64(s.cfg.EventTimeout)
		s.outstanding++
		s.inflight[d.id] = d
		sends = append(sends, resend{d: d, attempt: d.attempt, again: true})
	}
	sends = s.pumpLocked(nowNs, sends)
	s.infMu.Unlock()
	s.send(sends)
	for _, g := range dead {
		s.deadLetter(g)
	}
}

// backoffDelay is how long a batch waits to be published again after its
// delivery number attempt timed out: RedeliveryBackoff doubled for each
// earlier delivery, at most RedeliveryBackoffMax, times a random factor
// between 0.5 and 1. Each gateway draws its own jitter, so the batches
// that timed out together, on one gateway or on several, come back spread
// over half the wait instead of in one wave.
func (s *Server) backoffDelay(attempt uint32) time.Duration {
	return jittered(s.cfg.RedeliveryBackoff, s.cfg.RedeliveryBackoffMax, attempt)
}

// jittered is base doubled n-1 times, at most limit, times a random factor
// between 0.5 and 1.
func jittered(base, limit time.Duration, n uint32) time.Duration {
	d := base
	for i := uint32(1); i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

// nacked handles a worker's nack of delivery id: the batch goes again at
// once (through the window), or is given up if that was its last
// delivery. A nack of another attempt than the latest, or of a batch
// already on its way again, is ignored.
func (s *Server) nacked(id uint64, ack *bus.Ack) {
	s.infMu.Lock()
	d := s.inflight[id]
	if d == nil || d.state == deliveryQueued || (ack.Attempt != 0 && ack.Attempt != d.attempt) {
		s.infMu.Unlock()
		return
	}
	s.stats.nacks.Add(1)
	d.worker = strings.Clone(ack.Worker)
	// A delivery in back-off has failed already, and was not the last.
	last := d.state == deliveryOut && d.attempt >= uint32(s.cfg.MaxDeliveries)
	s.releaseLocked(d)
	nowNs := time.Now().UnixNano()
	if last {
		delete(s.inflight, id)
		sends := s.pumpLocked(nowNs, nil)
		s.infMu.Unlock()
		s.send(sends)
		s.deadLetter(givenUp{d: d, attempt: d.attempt, reason: bus.DeadLetterNack, err: ack.Error, worker: d.worker})
		return
	}
	d.again = true
	s.queueLocked(d)
	sends := s.pumpLocked(nowNs, nil)
	s.infMu.Unlock()
	s.send(sends)
}

// refusedBusy handles a busy nack of delivery id (bus.Ack.Busy): the
// worker did not take the batch for lack of room. It waits a back-off and
// goes again as the same attempt; the window is cut to the batches still
// out, and a fifth below at the first refusal of a batch sent since the
// last such cut. A busy nack of another attempt than the latest, or of a
// batch not out, is ignored.
func (s *Server) refusedBusy(id uint64, ack *bus.Ack) {
	s.infMu.Lock()
	d := s.inflight[id]
	if d == nil || d.state != deliveryOut || ack.Attempt != d.attempt {
		s.infMu.Unlock()
		return
	}
	s.stats.busy.Add(1)
	s.releaseLocked(d)
	if d.busyRun < 255 {
		d.busyRun++
	}
	d.repeat, d.again = true, false
	d.state = deliveryBackoff
	nowNs := time.Now().UnixNano()
	w := min(s.window, float64(s.outstanding))
	if d.published.Load() > s.lastBusyCut {
		// The first refusal of a batch sent since the last cut: the
		// workers hold less than what is out (a slot frees after its
		// ack is sent), so the window goes a step below, once a round.
		w *= busyCut
		s.lastBusyCut = nowNs
	}
	s.cutWindowLocked(w)
	d.deadline = nowNs + int64(s.busyDelay(d.busyRun))
	s.infMu.Unlock()
}

// busyDelay is how long a batch refused busy n times in a row waits:
// busyBackoff doubled per earlier refusal, at most RedeliveryBackoff,
// times a random factor between 0.5 and 1.
func (s *Server) busyDelay(n uint8) time.Duration {
	return jittered(busyBackoff, max(s.cfg.RedeliveryBackoff, busyBackoff), uint32(n))
}

// deadLetter gives up on a batch that is no longer in Server.inflight:
// it is published on the dead-letter subject, logged and counted, the
// client is closed if DeadLetterPolicy says so, and its next batch goes
// out.
func (s *Server) deadLetter(g givenUp) {
	s.stats.deadLettered.Add(1)
	dl := bus.DeadLetter{
		Version:    bus.Version,
		Batch:      s.batchOf(g.d, g.attempt),
		Reason:     g.reason,
		Error:      g.err,
		Worker:     g.worker,
		TimeUnixMs: time.Now().UnixMilli(),
	}
	if err := s.nc.Publish(s.subj.DeadLetter(), bus.AppendDeadLetter(nil, &dl)); err != nil {
		s.log.Warn("dead letter not published", "client", dl.Batch.Client, "err", err)
	}
	s.log.Warn("event batch given up: dead letter", "client", dl.Batch.Client, "delivery", g.d.id,
		"deliveries", g.attempt, "events", len(g.d.events), "reason", g.reason, "worker", g.worker, "error", g.err,
		"subject", s.subj.DeadLetter())
	c := g.d.c
	if u := g.d.upgrade; u != nil {
		// Not accepted: answered 503 like an upgrade nobody answered.
		u.e.hsMu.Lock()
		u = u.e.takeUpgradeLocked(u.t)
		u.e.hsMu.Unlock()
		if u != nil {
			u.e.upgradeFailed(u)
		}
		return
	}
	if s.cfg.DeadLetterPolicy == DeadLetterClose {
		s.close(c, ReasonEventFailed, false)
	}
	s.acked(c, g.d)
}
