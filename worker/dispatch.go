package worker

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/phase"
)

// maxKeptBuffer is the largest encode buffer a goroutine keeps between
// batches; a larger one (a batch that sent big messages) is let go.
const maxKeptBuffer = 64 << 10

// errNoReply: a batch without a reply subject cannot be acknowledged.
var errNoReply = errors.New("worker: batch without reply subject")

// job is one batch in hand, from the moment the subscription callback took
// it until its final Ack is sent or it is abandoned. A job is made per batch
// and never reused, so a Context retained by mistake after its handler
// returned cannot touch another client's batch.
//
// While it waits for a pool goroutine, a batch stays encoded: the callback
// reads only its header (delivery, attempt, version: what progress and
// nacks need), and the goroutine that runs it decodes the rest (open).
// During a connect wave most batches in hand are waiting, so the worker's
// heap holds their bytes, not their decoded requests and states
// (docs/benchmarks.md, "W1 worker memory, round 7").
type job struct {
	msg   *nats.Msg
	data  []byte         // the batch, encoded: msg.Data or its part of a multi message
	batch bus.EventBatch // decoded by open; byte fields alias msg.Data, which is ours
	taken time.Time      // when the callback took it
	reply string         // where its acks go
	size  int            // its encoded bytes, counted in waitingBytes
	// The batch's header, read when the callback took it; set before the
	// job is in hand and never written again, so the monitor reads them
	// while a pool goroutine decodes the batch.
	delivery uint64
	attempt  uint32
	version  uint32
	// multi: the batch came in an EventBatches message; its acks go to
	// reply inside Acks messages.
	multi bool
	// group, on the first batch of a multi message while it waits in the
	// queue, is the message's batches (multi.go).
	group *group
	// Room for a typical batch, so that decoding it and answering it
	// allocate no slices: its events, its groups, its actions.
	evRoom  [1]bus.Event
	grpRoom [4]string
	actRoom [1]bus.Action

	// The client as the handlers have left it so far (the local view).
	uid     string
	groups  []string // sorted, no duplicates
	session []byte   // JSON object of the batch or of the last SetSession; nil: none
	patches [][]byte // UpdateSession objects since then, in order
	actions []bus.Action
	flushed int         // actions[:flushed] went to the gateway before an API call
	ord     *orderedAPI // made by the first Context.API call; guards actions from then on

	ctx Context
}

// newJob makes the job of the batch m, reading its header only (open
// decodes the rest). The error wraps bus.ErrMalformed or is errNoReply.
func newJob(m *nats.Msg, now time.Time) (*job, error) {
	j := &job{msg: m, data: m.Data, taken: now, reply: m.Reply, size: len(m.Data)}
	if err := j.readHeader(); err != nil {
		return nil, err
	}
	if m.Reply == "" {
		return nil, errNoReply
	}
	return j, nil
}

// readHeader reads the delivery, attempt and version of j.data. The error
// wraps bus.ErrMalformed.
func (j *job) readHeader() error {
	var err error
	if j.version, j.delivery, j.attempt, err = bus.DecodeEventBatchHeader(j.data); err != nil {
		return fmt.Errorf("worker: decode batch: %w", err)
	}
	return nil
}

// open decodes the batch into j, in j's own room where it fits; called
// once, by the goroutine that runs j. The error wraps bus.ErrMalformed.
func (j *job) open() error {
	j.batch.Events = j.evRoom[:0]
	j.batch.State.Groups = j.grpRoom[:0]
	j.actions = j.actRoom[:0]
	if err := bus.DecodeEventBatchInto(j.data, &j.batch); err != nil {
		return fmt.Errorf("worker: decode batch: %w", err)
	}
	return nil
}

// appendAck appends the final Ack of j to b: the actions not flushed
// before an API call. From then on the handlers' API does not flush. For
// a batch of a multi message it appends the Ack as one entry of an Acks
// message.
func (j *job) appendAck(b []byte, worker string) []byte {
	if j.ord != nil {
		j.ord.detach()
	}
	return j.appendAnswer(b, &bus.Ack{Delivery: j.delivery, Actions: j.actions[j.flushed:], Worker: worker})
}

// appendAnswer appends a, an answer to j, as j's reply subject takes it:
// an Ack, or an Acks entry for a batch of a multi message.
func (j *job) appendAnswer(b []byte, a *bus.Ack) []byte {
	if j.multi {
		return bus.AppendAckItem(b, a)
	}
	return bus.AppendAck(b, a)
}

// onMsg is the subscription callback. NATS calls it for one message at a
// time; it never blocks: the batch's header is read, then the batch is
// queued for the pool (still encoded: see job) or, when the backlog is
// full, refused (refuseBusy). A batch whose header does not decode is
// nacked here; one whose events or state do not, when a pool goroutine
// opens it.
func (w *Worker) onMsg(m *nats.Msg) {
	j, err := newJob(m, time.Now())
	if err != nil {
		w.stats.malformed.Add(1)
		w.log.Warn("malformed batch nacked", "subject", m.Subject, "bytes", len(m.Data), "err", err)
		if m.Reply != "" {
			// The attempt is unknown (0): the gateway takes the nack for
			// its latest delivery, publishes the batch again at once and
			// dead-letters it after its last delivery.
			w.nack(m.Reply, false, 0, 0, err.Error())
		}
		return
	}
	n := len(m.Data)
	w.mu.Lock()
	if w.closed {
		// Stop gave up (abort): another worker can take it now.
		w.mu.Unlock()
		w.nackAbandoned(j)
		return
	}
	if w.waiting >= w.cfg.Backlog || (w.waiting > 0 && w.waitingBytes+n > w.cfg.BacklogBytes) {
		w.mu.Unlock()
		w.refuseBusy([]*job{j})
		return
	}
	w.inHand[j] = struct{}{}
	w.waiting++
	w.waitingBytes += n
	w.queueLocked(j)
	w.mu.Unlock()
	w.stats.batches.Add(1)
	if j.attempt > 1 {
		w.stats.redelivered.Add(1)
	}
}

// queueLocked puts j (with the batches of j.group, already counted in
// waiting) on the pool's queue, and starts a pool goroutine if none is
// free for it. Never blocks: len(queue) <= items <= waiting <=
// cfg.Backlog = cap(queue). Caller holds mu; the queue is open.
func (w *Worker) queueLocked(j *job) {
	w.items++
	if w.running+w.items > w.runners && w.runners < w.cfg.Concurrency {
		w.runners++
		go w.runLoop()
	}
	w.queue <- j
}

// runLoop is one goroutine of the pool: it runs queued batches until the
// queue is closed, or until it found nothing to do for two progress
// intervals (then the pool holds no goroutine, and no stack, for a worker
// that went quiet; onMsg starts goroutines again on demand).
func (w *Worker) runLoop() {
	var ack []byte
	idle := time.NewTicker(2 * w.cfg.ProgressInterval)
	defer idle.Stop()
	worked := false
	for {
		var j *job
		select {
		case next, ok := <-w.queue:
			if !ok {
				w.mu.Lock()
				w.runners--
				w.checkRunnersDoneLocked()
				w.mu.Unlock()
				return
			}
			j = next
		case <-idle.C:
			if !worked && w.retireIdle() {
				return
			}
			worked = false
			continue
		}
		worked = true
		ack = w.run(j, ack)
	}
}

// retireIdle takes an idle goroutine out of the pool, unless batches are
// waiting for one. Deciding under mu, where onMsg counts the goroutines
// before queueing a batch, means a batch is never left without one.
func (w *Worker) retireIdle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting > 0 {
		return false
	}
	w.runners--
	w.checkRunnersDoneLocked()
	return true
}

// run handles the batch j taken from the queue, and the batches of its
// multi message that came with it (runGroup), and acknowledges them; ack
// is the goroutine's encode buffer, returned for the next batch.
func (w *Worker) run(j *job, ack []byte) []byte {
	w.mu.Lock()
	w.items--
	w.mu.Unlock()
	if j.group != nil {
		return w.runGroup(j, ack)
	}
	ack, ok := w.runOne(j, ack[:0])
	if ok {
		w.publishAck(j, ack)
	}
	if cap(ack) > maxKeptBuffer {
		ack = nil
	}
	return ack
}

// runOne runs j's handlers and appends its final answer to ack; ok is
// false when the worker aborted (nothing to publish).
func (w *Worker) runOne(j *job, ack []byte) (_ []byte, ok bool) {
	w.mu.Lock()
	w.waiting--
	w.waitingBytes -= j.size
	aborted := w.aborted
	if !aborted {
		w.running++
	}
	w.mu.Unlock()
	if aborted {
		w.stats.abandoned.Add(1)
		return ack, false
	}
	if err := j.open(); err != nil {
		w.mu.Lock()
		delete(w.inHand, j)
		w.running--
		w.mu.Unlock()
		w.stats.malformed.Add(1)
		w.log.Warn("malformed batch nacked", "subject", j.msg.Subject, "bytes", j.size, "delivery", j.delivery, "err", err)
		w.nack(j.reply, j.multi, j.delivery, j.attempt, err.Error())
		return ack, false
	}

	w.dispatch(j)
	ack = j.appendAck(ack, w.cfg.ID)

	// Leave inHand before the Ack is published: the monitor publishes
	// progress under mu, so no progress follows the final Ack.
	w.mu.Lock()
	delete(w.inHand, j)
	w.running--
	aborted = w.aborted
	w.mu.Unlock()
	if aborted {
		w.stats.abandoned.Add(1)
		return ack, false
	}
	return ack, true
}

// nack refuses delivery of a batch: its gateway publishes it again at
// once (to any worker), or gives up on it after its last delivery. multi:
// the batch came in a multi message (the nack goes in an Acks).
func (w *Worker) nack(reply string, multi bool, delivery uint64, attempt uint32, reason string) {
	a := &bus.Ack{Delivery: delivery, Nack: true, Attempt: attempt, Error: reason, Worker: w.cfg.ID}
	var ack []byte
	if multi {
		ack = bus.AppendAckItem(nil, a)
	} else {
		ack = bus.AppendAck(nil, a)
	}
	if err := w.nc.Publish(reply, ack); err != nil {
		w.stats.ackErrors.Add(1)
		return
	}
	w.stats.nacked.Add(1)
}

// refuseBusy answers the batches js, for which the backlog has no room,
// with busy nacks (bus.Ack.Busy), in one message when they came in one:
// their gateway publishes them again, as the same attempt, once its
// workers have room, and meanwhile sends fewer batches at once. A batch of
// a gateway older than protocol version 3 (which would publish it again
// at once and spend a delivery) is dropped instead, and comes back after
// that gateway's timeout and back-off. Counted in Stats.Refused and
// Stats.Dropped, reported by the monitor (no log line per batch).
func (w *Worker) refuseBusy(js []*job) {
	var b []byte
	n := 0
	for _, j := range js {
		if j.version < bus.VersionBusy {
			w.stats.dropped.Add(1)
			continue
		}
		a := bus.BusyNack(j.delivery, j.attempt, w.cfg.ID)
		if !j.multi {
			w.publishBusy(j.reply, bus.AppendAck(nil, &a), 1)
			continue
		}
		b = bus.AppendAckItem(b, &a)
		n++
	}
	if n > 0 {
		w.publishBusy(js[0].reply, b, n) // a multi message's batches share its reply subject
	}
}

// publishBusy publishes the busy nacks of n batches in one message.
func (w *Worker) publishBusy(reply string, b []byte, n int) {
	if err := w.nc.Publish(reply, b); err != nil {
		w.stats.ackErrors.Add(1)
		w.stats.dropped.Add(uint64(n)) // the gateway's timeout brings them back
		return
	}
	w.stats.refused.Add(uint64(n))
}

// nackAbandoned nacks j, a batch this worker will not run (Stop gave up),
// so that another worker gets it without waiting for the gateway's
// timeout. Only gateways of protocol version 2 or later understand a
// nack (an older one would take it for an empty final ack): j's batch is
// left to time out otherwise.
func (w *Worker) nackAbandoned(j *job) {
	if j.version >= 2 {
		w.nack(j.reply, j.multi, j.delivery, j.attempt, "worker stopping")
	}
}

// publishAck sends the final Ack of j (for a batch of a multi message:
// the Acks of j and of the batches of its message that finished with it).
func (w *Worker) publishAck(j *job, ack []byte) {
	if err := w.nc.Publish(j.reply, ack); err != nil {
		w.stats.ackErrors.Add(1)
		w.log.Warn("ack not sent; the gateway will redeliver", "client", j.batch.Client,
			"delivery", j.delivery, "err", err)
		return
	}
	w.stats.acked.Add(1)
	w.stats.ackMsgs.Add(1)
}

// dispatch runs the handlers for every event of j, in order, on the
// calling goroutine.
func (w *Worker) dispatch(j *job) {
	st := &j.batch.State
	j.uid = st.UID
	j.groups = st.Groups // decoded for us: ours to sort and edit
	if !slices.IsSorted(j.groups) {
		slices.Sort(j.groups)
	}
	j.groups = slices.Compact(j.groups)
	j.session = st.Session
	j.ctx = Context{w: w, j: j}
	for i := range j.batch.Events {
		w.dispatchEvent(&j.ctx, &j.batch.Events[i])
	}
}

// dispatchEvent calls the handler of one event. A panic is recovered and
// logged; the batch goes on with its next event, and the actions the
// handler queued before it panicked are kept (they are already in the
// local view, and its API calls cannot be undone either).
func (w *Worker) dispatchEvent(c *Context, ev *bus.Event) {
	c.ev = ev
	defer func() {
		if r := recover(); r != nil {
			w.stats.panics.Add(1)
			w.log.Error("handler panicked; batch acknowledged anyway", "client", c.ClientID(),
				"event", ev.Type.String(), "delivery", c.j.batch.Delivery, "attempt", c.Attempt(),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	switch ev.Type {
	case bus.EventConnect:
		w.stats.connects.Add(1)
		if h := w.h.OnConnect; h != nil {
			h(c)
		}
	case bus.EventWebSocketConnect:
		w.stats.webSocketConnects.Add(1)
		if h := w.h.OnWebSocketConnect; h != nil {
			h(c, newRequest(ev.Request))
		}
	case bus.EventMessage:
		w.stats.messages.Add(1)
		if h := w.h.OnMessage; h != nil {
			// Capacity capped: appending reallocates instead of writing
			// over the rest of the NATS message.
			h(c, ev.Data[:len(ev.Data):len(ev.Data)])
		}
	case bus.EventClose:
		w.stats.closes.Add(1)
		if h := w.h.OnClose; h != nil {
			h(c)
		}
	case bus.EventDecodeError:
		w.stats.messages.Add(1)
		if h := w.h.OnDecodeError; h != nil {
			h(c, ev.Data[:len(ev.Data):len(ev.Data)], &DecodeError{Listener: c.j.batch.State.Listener, Codec: c.j.batch.State.Codec, Reason: ev.Error})
		}
	default:
		w.stats.unknownEvents.Add(1)
	}
}

// monitor runs while the worker is started: every ProgressInterval it tells
// the gateways which batches are still in hand, and reports drops.
func (w *Worker) monitor() {
	defer close(w.monDone)
	// On wall-clock boundaries (internal/phase): the announcements of
	// every worker reach a gateway together, with the gateways' own
	// heartbeats, in one wake-up.
	t := time.NewTimer(phase.Until(w.cfg.ProgressInterval))
	defer t.Stop()
	var buf []byte
	var reported uint64
	var rel releaser
	floor := newHeapFloor(w.cfg.HeapFloor, w.log)
	if floor != nil {
		defer floor.set(floor.base)
	}
	for {
		select {
		case <-w.monStop:
			return
		case now := <-t.C:
			t.Reset(phase.Until(w.cfg.ProgressInterval))
			buf = w.sendProgress(now, buf)
			w.sendTaskProgress()
			w.announceTick(now)
			reported = w.reportDrops(reported)
			if floor != nil {
				floor.tick(w.stats.batches.Load())
			}
			if w.cfg.ReleaseMemory {
				w.releaseIfIdle(&rel, now)
			}
		}
	}
}

// releaseEvery is the least time between two releases of memory
// (Config.ReleaseMemory).
const releaseEvery = 10 * time.Second

// freeOSMemory returns the free heap to the operating system; a variable
// for the tests.
var freeOSMemory = debug.FreeOSMemory

// releaser is the monitor's record of Config.ReleaseMemory.
type releaser struct {
	seen     uint64    // batches taken at the previous tick
	released uint64    // batches taken at the last release
	last     time.Time // the last release
}

// releaseIfIdle returns the memory of a past burst to the operating system
// when the worker has taken batches since the last release, none since the
// previous tick, and holds none and no pool goroutine (see
// Config.ReleaseMemory). The in-hand index is made anew too: a map keeps
// the room of the most batches it ever held.
func (w *Worker) releaseIfIdle(r *releaser, now time.Time) {
	taken := w.stats.batches.Load()
	quiet := taken == r.seen
	r.seen = taken
	if !quiet || taken == r.released || now.Sub(r.last) < releaseEvery {
		return
	}
	w.mu.Lock()
	idle := w.runners == 0 && w.waiting == 0 && len(w.inHand) == 0
	if idle {
		w.inHand = make(map[*job]struct{})
	}
	w.mu.Unlock()
	if !idle {
		return
	}
	bus.ForgetStrings()
	freeOSMemory()
	r.released, r.last = taken, now
	w.stats.memoryReleases.Add(1)
	w.logMemory("memory released after a burst")
}

// sendProgress publishes a progress Ack for every batch in hand for at
// least half an interval (younger ones get theirs on the next tick, within
// 1.5 intervals of arrival). It holds mu while publishing, so a progress
// Ack never follows the final Ack of its batch; publishing only copies into
// the connection's buffer.
func (w *Worker) sendProgress(now time.Time, buf []byte) []byte {
	minAge := w.cfg.ProgressInterval / 2
	w.mu.Lock()
	defer w.mu.Unlock()
	for j := range w.inHand {
		if now.Sub(j.taken) < minAge {
			continue
		}
		buf = j.appendAnswer(buf[:0], &bus.Ack{Delivery: j.delivery, Progress: true, Worker: w.cfg.ID})
		if err := w.nc.Publish(j.reply, buf); err != nil {
			w.stats.ackErrors.Add(1)
			continue
		}
		w.stats.progress.Add(1)
	}
	return buf
}

// reportDrops logs the batches dropped since the last report (backlog full
// with a gateway older than protocol version 3, or NATS pending limits
// exceeded) and returns the new total. Busy refusals are not logged: the
// gateways hold those batches and send fewer; Stats.Refused counts them.
func (w *Worker) reportDrops(reported uint64) uint64 {
	w.mu.Lock()
	sub, msub := w.sub, w.msub
	w.mu.Unlock()
	if sub == nil {
		return 0 // a task worker: no events
	}
	var dropped uint64
	for _, s := range []*nats.Subscription{sub, msub} {
		if s == nil {
			continue
		}
		if n, err := s.Dropped(); err == nil && n >= 0 {
			dropped += uint64(n)
		}
	}
	w.stats.natsDropped.Store(dropped)
	total := w.stats.dropped.Load() + w.stats.natsDropped.Load()
	if total > reported {
		w.log.Warn("slow worker: batches dropped, the gateways will redeliver them",
			"dropped", total-reported, "total", total)
	}
	return total
}
