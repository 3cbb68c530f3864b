package gateway

import (
	"math/rand/v2"
	"strings"
	"time"

	"github.com/gatework/gatework/bus"
)

// Redelivery of event batches. A delivery fails when it gets no final ack
// and no progress for EventTimeout, or when a worker nacks it. After a
// timeout the batch waits a back-off (RedeliveryBackoff, doubled per
// failure up to RedeliveryBackoffMax, with jitter) and is published again
// with attempt+1; a progress ack during the wait calls the redelivery off
// (a worker has the batch after all), a final ack completes it, a nack
// ends the wait at once. After a nack the batch is published again at
// once. When the failed delivery was the MaxDeliveries-th, the gateway
// gives up: it publishes a bus.DeadLetter, and the client's next batch
// goes out (DeadLetterPolicy may close the client too). A client has one
// batch in flight at a time, so its later events wait for this one to be
// acked or dead-lettered: its order is kept.

// resend is one batch to publish again, with the attempt number it goes
// out as (read under infMu, published after it is released).
type resend struct {
	d       *delivery
	attempt uint32
}

// givenUp is a batch the gateway gives up on.
type givenUp struct {
	d       *delivery
	attempt uint32
	reason  string // bus.DeadLetterTimeout or bus.DeadLetterNack
	err     string // the nack's error
	worker  string
}

// redeliverExpired handles the deliveries whose deadline passed: one whose
// ack timed out goes into back-off (or is given up after its last
// delivery), one whose back-off ended is published again. While batches
// are parked, it also probes once a second with one of them whether a
// worker has appeared.
func (s *Server) redeliverExpired(now time.Time) {
	var again []resend
	var dead []givenUp
	nowNs := now.UnixNano()
	deadline := now.Add(s.cfg.EventTimeout).UnixNano()
	s.infMu.Lock()
	for id, d := range s.inflight {
		if d.deadline > nowNs {
			continue
		}
		if d.backoff {
			d.backoff = false
			d.attempt++
			d.deadline = deadline
			again = append(again, resend{d, d.attempt})
			continue
		}
		s.stats.timeouts.Add(1)
		if d.attempt >= uint32(s.cfg.MaxDeliveries) {
			delete(s.inflight, id)
			dead = append(dead, givenUp{d: d, attempt: d.attempt, reason: bus.DeadLetterTimeout, worker: d.worker})
			continue
		}
		d.backoff = true
		d.deadline = nowNs + int64(s.backoffDelay(d.attempt))
	}
	if len(s.parked) > 0 && now.Sub(s.lastProbe) >= time.Second {
		s.lastProbe = now
		d := s.parked[0]
		s.parked = s.parked[1:]
		if len(s.parked) == 0 {
			s.parked = nil
		}
		// The parked publish reached nobody: the probe goes out as the
		// same attempt.
		d.parked = false
		d.deadline = deadline
		s.inflight[d.id] = d
		again = append(again, resend{d, d.attempt})
	}
	s.infMu.Unlock()
	for _, r := range again {
		s.stats.redelivered.Add(1)
		s.publish(r.d, r.attempt)
	}
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
	d := s.cfg.RedeliveryBackoff
	for i := uint32(1); i < attempt && d < s.cfg.RedeliveryBackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RedeliveryBackoffMax)
	return d/2 + rand.N(d/2+1)
}

// nacked handles a worker's nack of delivery id: the batch is published
// again at once, or given up if that was its last delivery. A nack of an
// older attempt than the latest is ignored (its delivery already failed).
func (s *Server) nacked(id uint64, ack *bus.Ack) {
	s.infMu.Lock()
	d := s.inflight[id]
	if d == nil || (ack.Attempt != 0 && ack.Attempt != d.attempt) {
		s.infMu.Unlock()
		return
	}
	s.stats.nacks.Add(1)
	d.worker = strings.Clone(ack.Worker)
	if !d.backoff && d.attempt >= uint32(s.cfg.MaxDeliveries) {
		// A delivery in back-off has failed already, and was not the last.
		delete(s.inflight, id)
		s.infMu.Unlock()
		s.deadLetter(givenUp{d: d, attempt: d.attempt, reason: bus.DeadLetterNack, err: ack.Error, worker: d.worker})
		return
	}
	d.backoff = false
	d.attempt++
	d.deadline = time.Now().Add(s.cfg.EventTimeout).UnixNano()
	attempt := d.attempt
	s.infMu.Unlock()
	s.stats.redelivered.Add(1)
	s.publish(d, attempt)
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
	if s.cfg.DeadLetterPolicy == DeadLetterClose {
		s.close(c, ReasonEventFailed, false)
	}
	s.acked(c, g.d)
}
