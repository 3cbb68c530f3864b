package worker

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// Multi messages: the batches of several clients of one gateway in one
// EventBatches message (docs/bus-protocol.md, "Batching across
// clients"). The batches of one message are one entry of the pool's
// queue, so the message costs one goroutine hand-off instead of one per
// batch; the goroutine that takes it runs them in order and answers them
// with one Acks message. A batch whose handlers take longer than
// slowBatch hands the batches still waiting behind it back to the queue,
// one entry each (other goroutines of the pool take them), so a slow
// handler holds up the other clients of its message for one handler run
// at most. Each batch keeps its own delivery: progress, nacks, abandon
// and redelivery work batch by batch, as for single batches.

// slowBatch is how long a batch of a multi message may run before the
// batches behind it go back to the pool's queue.
const slowBatch = time.Millisecond

// onMulti is the callback of the multi events subscription. Like onMsg it
// never blocks: the batches are decoded and queued as one entry for the
// pool, those the backlog cannot hold are dropped (their gateway
// redelivers them after its back-off), and a message that does not decode
// gets its batches that did decode nacked.
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
				w.nack(m.Reply, true, j.batch.Delivery, j.batch.Attempt, fmt.Sprintf("worker: decode multi message: %v", err))
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
	// As many as the backlog holds; the rest are dropped, batch by batch.
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
		taken[0].rest = taken[1:]
		w.queueLocked(taken[0])
	}
	w.mu.Unlock()
	if dropped := len(jobs) - k; dropped > 0 {
		w.stats.dropped.Add(uint64(dropped))
	}
	w.stats.batches.Add(uint64(k))
	for _, j := range taken {
		if j.batch.Attempt > 1 {
			w.stats.redelivered.Add(1)
		}
	}
}

// newMultiJobs decodes the multi message m into one job per batch. On an
// error (wrapping bus.ErrMalformed, or errNoReply) it also returns the
// jobs of the batches that decoded before it, to be nacked.
func newMultiJobs(m *nats.Msg, now time.Time) ([]*job, error) {
	var jobs []*job
	var bad error
	err := bus.RangeEventBatches(m.Data, func(b []byte) bool {
		j := &job{msg: m, taken: now, reply: m.Reply, size: len(b), multi: true}
		if bad = j.decode(b); bad != nil {
			return false
		}
		jobs = append(jobs, j)
		return true
	})
	if err == nil && bad != nil {
		err = fmt.Errorf("worker: decode batch: %w", bad)
	}
	if err == nil && m.Reply == "" {
		err = errNoReply
	}
	return jobs, err
}

// runGroup runs head and the batches of its multi message that came with
// it (head.rest), in order, and answers them with one Acks message to
// their reply subject when they are done; after a batch that ran longer
// than slowBatch, the answers so far are published and the batches still
// waiting go back to the queue. buf is the goroutine's encode buffer.
func (w *Worker) runGroup(head *job, buf []byte) []byte {
	group := append(make([]*job, 0, 1+len(head.rest)), head)
	group = append(group, head.rest...)
	head.rest = nil
	buf = buf[:0]
	answered := 0 // answers in buf
	for i, j := range group {
		start := time.Now()
		var ok bool
		if buf, ok = w.runOne(j, buf); ok {
			answered++
		}
		if i+1 < len(group) && time.Since(start) >= slowBatch {
			w.publishAnswers(head.reply, buf, answered)
			buf, answered = buf[:0], 0
			if w.requeue(group[i+1:]) {
				break
			}
		}
	}
	w.publishAnswers(head.reply, buf, answered)
	if cap(buf) > maxKeptBuffer {
		buf = nil
	}
	return buf
}

// requeue puts the batches of a multi message still waiting behind a slow
// one back on the queue, one entry each; they are counted in waiting
// already. It reports false when the queue is closed (Stop): the caller
// runs them itself.
func (w *Worker) requeue(jobs []*job) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	for _, j := range jobs {
		w.queueLocked(j)
	}
	return true
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
}
