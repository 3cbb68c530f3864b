package worker

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// Multi messages: the batches of several clients of one gateway in one
// EventBatches message (docs/bus-protocol.md, "Batching across
// clients"). The batches of one message are one entry of the pool's
// queue, so the message costs one goroutine hand-off instead of one per
// batch; the goroutine that takes it runs them in order and answers them
// with one Acks message. When the message is still running after
// slowGroup (a slow handler, or many batches), a timer hands the batches
// not started yet back to the queue, one entry each, where other
// goroutines of the pool take them: a slow handler holds up the other
// clients of its message for slowGroup at most. Each batch keeps its own
// delivery: progress, nacks, abandon and redelivery work batch by batch,
// as for single batches.

// slowGroup is how long the batches of a multi message wait behind the
// ones running before they go back to the pool's queue.
const slowGroup = time.Millisecond

// group is the batches of one multi message in the pool. Batches are
// claimed in order through next; spilling them back to the queue claims
// all that are left at once.
type group struct {
	jobs []*job
	next atomic.Int32
}

// claim returns the index of the next batch to run, or -1.
func (g *group) claim() int {
	for {
		i := g.next.Load()
		if int(i) >= len(g.jobs) {
			return -1
		}
		if g.next.CompareAndSwap(i, i+1) {
			return int(i)
		}
	}
}

// onMulti is the callback of the multi events subscription. Like onMsg it
// never blocks: the batches' headers are read and the batches queued as
// one entry for the pool, those the backlog cannot hold are refused
// (refuseBusy, one message for all), and a message that does not decode
// gets its batches whose headers did nacked.
func (w *Worker) onMulti(m *nats.Msg) {
	jobs, err := newMultiJobs(m, time.Now())
	if err == nil && len(jobs) == 0 {
		return // nothing to run, nothing to answer
	}
	if err != nil {
		w.stats.malformed.Add(1)
		w.log.Warn("malformed multi message: its batches that decoded are nacked", "subject", m.Subject,
			"bytes", len(m.Data), "batches", len(jobs), "err", err)
		if m.Reply != "" {
			for _, j := range jobs {
				w.nack(m.Reply, true, j.delivery, j.attempt, fmt.Sprintf("worker: decode multi message: %v", err))
			}
		}
		return
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		for _, j := range jobs {
			w.nackAbandoned(j)
		}
		return
	}
	// As many as the backlog holds; the rest are refused as busy.
	k, size := 0, 0
	for _, j := range jobs {
		if w.waiting+k >= w.cfg.Backlog || (w.waiting+k > 0 && w.waitingBytes+size+j.size > w.cfg.BacklogBytes) {
			break
		}
		k++
		size += j.size
	}
	taken := jobs[:k]
	for _, j := range taken {
		w.inHand[j] = struct{}{}
	}
	w.waiting += k
	w.waitingBytes += size
	if k > 0 {
		taken[0].group = &group{jobs: taken}
		w.queueLocked(taken[0])
	}
	w.mu.Unlock()
	if k < len(jobs) {
		w.refuseBusy(jobs[k:])
	}
	w.stats.batches.Add(uint64(k))
	w.stats.multiMsgs.Add(1)
	for _, j := range taken {
		if j.attempt > 1 {
			w.stats.redelivered.Add(1)
		}
	}
}

// newMultiJobs makes one job per batch of the multi message m, reading
// their headers only (see job). On an error (wrapping bus.ErrMalformed,
// or errNoReply) it also returns the jobs of the batches read before it,
// to be nacked.
func newMultiJobs(m *nats.Msg, now time.Time) ([]*job, error) {
	var jobs []*job
	var bad error
	err := bus.RangeEventBatches(m.Data, func(b []byte) bool {
		j := &job{msg: m, data: b, taken: now, reply: m.Reply, size: len(b), multi: true}
		if bad = j.readHeader(); bad != nil {
			return false
		}
		jobs = append(jobs, j)
		return true
	})
	if err == nil && bad != nil {
		err = bad
	}
	if err == nil && m.Reply == "" {
		err = errNoReply
	}
	return jobs, err
}

// runGroup runs the batches of head's multi message in order and
// answers them with one Acks message to their reply subject when they are
// done. If they are not done within slowGroup, the batches not started
// yet go back to the queue (spill). buf is the goroutine's encode buffer.
func (w *Worker) runGroup(head *job, buf []byte) []byte {
	g := head.group
	head.group = nil
	var spill *time.Timer
	if len(g.jobs) > 1 {
		spill = time.AfterFunc(slowGroup, func() { w.spill(g) })
	}
	buf = buf[:0]
	answered := 0 // answers in buf
	for i := g.claim(); i >= 0; i = g.claim() {
		var ok bool
		if buf, ok = w.runOne(g.jobs[i], buf); ok {
			answered++
		}
	}
	if spill != nil {
		spill.Stop()
	}
	w.publishAnswers(head.reply, buf, answered)
	if cap(buf) > maxKeptBuffer {
		buf = nil
	}
	return buf
}

// spill puts the batches of g not started yet back on the queue, one
// entry each (they are counted in waiting already), for other goroutines
// of the pool. Once the queue is closed (Stop) it leaves them to the
// goroutine running g.
func (w *Worker) spill(g *group) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for {
		i := g.next.Load()
		if int(i) >= len(g.jobs) {
			return
		}
		if g.next.CompareAndSwap(i, int32(len(g.jobs))) {
			for _, j := range g.jobs[i:] {
				w.queueLocked(j)
			}
			w.stats.spilled.Add(uint64(len(g.jobs) - int(i)))
			return
		}
	}
}

// publishAnswers publishes the Acks message acks (n answers) to reply,
// unless the worker aborted meanwhile.
func (w *Worker) publishAnswers(reply string, acks []byte, n int) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	aborted := w.aborted
	w.mu.Unlock()
	if aborted {
		return
	}
	if err := w.nc.Publish(reply, acks); err != nil {
		w.stats.ackErrors.Add(uint64(n))
		w.log.Warn("acks not sent; the gateway will redeliver", "acks", n, "err", err)
		return
	}
	w.stats.acked.Add(uint64(n))
	w.stats.ackMsgs.Add(1)
}
