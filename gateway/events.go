package gateway

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// delivery is one batch of a client's events on its way to a worker. It is
// in Server.inflight until a final ack arrives or the gateway gives up on
// it (dead letter); a delivery without ack or progress for EventTimeout
// counts as failed and the batch is published again after a back-off
// (at-least-once), at most MaxDeliveries times in all. See redelivery.go.
type delivery struct {
	id     uint64
	c      *conn
	events []bus.Event
	// gateUID is the uid whose gate the batch holds until it ends
	// (DispatchUID), or "".
	gateUID string
	// The fields below are guarded by Server.infMu. attempt is the
	// number of the latest delivery (1 for the first); again says the
	// next publish is a new delivery (attempt+1). deadline (unix
	// nanoseconds) is, by state, when the delivery out times out or when
	// the back-off ends. worker is the worker of the latest nack or
	// progress ack.
	attempt  uint32
	again    bool
	repeat   bool  // refused busy: the next publish repeats the attempt
	busyRun  uint8 // busy refusals in a row, for their back-off
	sent     bool  // published at least once
	state    deliveryState
	deadline int64
	parked   bool // no worker was subscribed
	worker   string
	// published is when the latest attempt was published (unix
	// nanoseconds), for Stats.AckLatency.
	published atomic.Int64
	// upgrade is, for the batch of an upgrade held for the workers, the
	// upgrade (upgrade.go); set before the first publish.
	upgrade *pendingUpgrade
	// multi is the multi message (multi.go) the latest publish went in,
	// 0 for a single EventBatch.
	multi atomic.Uint64
}

// pushEvent queues ev for c's workers and dispatches it now if c has no
// batch in flight. Events of one client are delivered in order, one batch
// at a time. At the pending bound c is closed (event_backlog); the close
// event itself is always queued.
func (s *Server) pushEvent(c *conn, ev bus.Event) {
	c.evmu.Lock()
	if ev.Type != bus.EventClose &&
		(len(c.pending) >= s.cfg.MaxPendingEvents || c.pendingBytes+len(ev.Data) > s.cfg.MaxPendingBytes) {
		c.evmu.Unlock()
		s.close(c, ReasonEventBacklog, false)
		return
	}
	c.pending = append(c.pending, ev)
	c.pendingBytes += len(ev.Data)
	if c.inflight == nil && !c.gateWait {
		s.dispatchLocked(c)
	}
	c.evmu.Unlock()
}

// dispatchLocked sends the next batch of c's pending events, or, under
// DispatchUID, puts c in line for its uid's gate (see dispatchuid.go).
// Caller holds c.evmu, c.inflight is nil, c is not in a gate's line and
// c.pending is not empty.
func (s *Server) dispatchLocked(c *conn) {
	uid, ok := s.gateLocked(c)
	if !ok {
		return
	}
	s.sendBatchLocked(c, uid)
}

// sendBatchLocked sends the next batch of c's pending events, holding
// uid's gate when uid is not "". Caller holds c.evmu, c.inflight is nil
// and c.pending is not empty.
func (s *Server) sendBatchLocked(c *conn, uid string) {
	n := min(len(c.pending), s.cfg.MaxBatch)
	var events []bus.Event
	if n == len(c.pending) {
		// The whole backlog goes: hand the slice over, no copy.
		events, c.pending = c.pending, nil
	} else {
		events = make([]bus.Event, n)
		copy(events, c.pending)
		clear(c.pending[:n])
		c.pending = c.pending[n:]
	}
	for _, ev := range events {
		c.pendingBytes -= len(ev.Data)
	}
	d := &delivery{id: s.nextDelivery.Add(1), c: c, events: events, attempt: 1, gateUID: uid}
	c.inflight = d
	s.infMu.Lock()
	s.inflight[d.id] = d
	s.queueLocked(d)
	var room [2]resend // most pumps take one batch: no allocation
	sends := s.pumpLocked(time.Now().UnixNano(), room[:0])
	s.infMu.Unlock()
	s.send(sends)
}

var encodePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// batchOf returns batch d as attempt, with c's current state.
func (s *Server) batchOf(d *delivery, attempt uint32) bus.EventBatch {
	c := d.c
	c.sh.mu.Lock()
	st := c.snapshot(s.id, bus.FieldAll)
	c.sh.mu.Unlock()
	return bus.EventBatch{
		Version:  bus.Version,
		Gateway:  s.id,
		Delivery: d.id,
		Client:   c.id(s.id),
		State:    st,
		Events:   d.events,
		Attempt:  attempt,
	}
}

// publish encodes d as its delivery number attempt, with c's current
// state, and publishes it to the workers. A failed publish counts as a
// delivery that timed out.
func (s *Server) publish(d *delivery, attempt uint32) {
	batch := s.batchOf(d, attempt)
	bp := encodePool.Get().(*[]byte)
	buf := bus.AppendEventBatch((*bp)[:0], &batch)
	d.published.Store(time.Now().UnixNano())
	d.multi.Store(0)
	var rb [96]byte // the reply subject, built in one allocation
	reply := string(strconv.AppendUint(append(rb[:0], s.ackPrefix...), d.id, 10))
	err := s.nc.PublishRequest(s.subj.Events(), reply, buf)
	s.stats.eventMsgs.Add(1)
	*bp = buf
	if cap(buf) <= 1<<20 {
		encodePool.Put(bp)
	}
	if err != nil {
		s.log.Warn("event batch not published; will retry", "client", batch.Client, "err", err)
	}
}

// onAck handles a worker's answer to a batch, or the NATS server's
// no-responders status when no worker is subscribed; answers to multi
// messages (an "m" before the number) go to onMultiAck.
func (s *Server) onAck(m *nats.Msg) {
	s.stats.ackMsgs.Add(1)
	suffix := strings.TrimPrefix(m.Subject, s.ackPrefix)
	multi := len(suffix) > 1 && suffix[0] == 'm' // the reply subject of a multi message
	if multi {
		suffix = suffix[1:]
	}
	id, err := strconv.ParseUint(suffix, 10, 64)
	if err != nil {
		s.stats.badAcks.Add(1)
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		// No worker subscribed: the NATS server's no-responders status.
		if multi {
			s.multiNoResponders(id)
		} else {
			s.park(id)
		}
		return
	}
	if multi {
		s.onMultiAck(m)
		return
	}
	var ack bus.Ack
	if err := bus.DecodeAck(m.Data, &ack); err != nil {
		s.stats.badAcks.Add(1)
		s.log.Warn("malformed ack dropped", "err", err)
		return
	}
	s.handleAck(id, &ack, m)
}

// handleAck handles ack, the answer to delivery id that arrived in m (m
// is answered once a progress ack's actions are applied, when it is a
// request).
func (s *Server) handleAck(id uint64, ack *bus.Ack, m *nats.Msg) {
	s.closeSkip.sawWorker(ack.Worker)
	if ack.Nack {
		if ack.Busy {
			s.refusedBusy(id, ack)
		} else {
			s.nacked(id, ack)
		}
		return
	}
	s.infMu.Lock()
	d := s.inflight[id]
	if d == nil {
		// A duplicate: the batch was redelivered and already acked.
		s.infMu.Unlock()
		s.answerAck(m)
		return
	}
	if ack.Progress {
		// A worker has the batch: its deadline moves, and a redelivery
		// waiting in back-off or in the window's queue is called off.
		if d.state != deliveryOut {
			d.state = deliveryOut
			d.again, d.repeat, d.busyRun = false, false, 0
			s.outstanding++
		}
		d.deadline = time.Now().Add(s.cfg.EventTimeout).UnixNano()
		if d.worker != ack.Worker {
			d.worker = strings.Clone(ack.Worker)
		}
		s.infMu.Unlock()
		// A worker flushing its handler's actions before an API call:
		// they apply now, in order, before the rest of the batch's.
		if d.upgrade != nil {
			s.upgradeProgress(d.upgrade, ack.Actions) // kept for the 101
			s.answerAck(m)
			return
		}
		s.applyActions(d.c, ack.Actions, func() { s.answerAck(m) })
		return
	}
	delete(s.inflight, id)
	s.releaseLocked(d)
	s.openWindowLocked()
	var room [2]resend
	sends := s.pumpLocked(time.Now().UnixNano(), room[:0])
	unpark := s.parked
	s.parked = nil
	s.infMu.Unlock()
	s.send(sends)
	s.recordAck(d, ack.Worker)

	c := d.c
	if d.upgrade != nil {
		s.upgradeAnswered(d.upgrade, ack.Actions)
	} else {
		s.applyActions(c, ack.Actions, func() { s.acked(c, d) })
	}
	// A worker answered, so batches parked for lack of one can go now.
	s.resume(unpark)
}

// answerAck answers an ack sent as a request (a progress ack with
// actions), once its actions are applied: the worker waits for it before
// it goes on.
func (s *Server) answerAck(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	if err := s.nc.Publish(m.Reply, nil); err != nil {
		s.log.Warn("ack answer not sent", "err", err)
	}
}

// acked ends batch d of c once its actions are applied: c's next batch,
// if any, goes out; under DispatchUID the gate d held passes on.
func (s *Server) acked(c *conn, d *delivery) {
	c.evmu.Lock()
	ended := c.inflight == d
	if ended {
		c.inflight = nil
		if len(c.pending) > 0 && d.gateUID == "" && !c.gateWait {
			s.dispatchLocked(c)
		}
	}
	c.evmu.Unlock()
	if ended && d.gateUID != "" {
		s.passGate(d.gateUID, c)
	}
}

// park holds batch id until a worker is up: the NATS server said nobody is
// subscribed to the events subject.
func (s *Server) park(id uint64) {
	s.infMu.Lock()
	d := s.inflight[id]
	if d == nil || d.parked {
		s.infMu.Unlock()
		return
	}
	s.releaseLocked(d)
	d.parked = true
	delete(s.inflight, id)
	s.parked = append(s.parked, d)
	sends := s.pumpLocked(time.Now().UnixNano(), nil)
	s.infMu.Unlock()
	s.send(sends)
}

// resume publishes parked batches again (as the same attempt: the parked
// publish reached nobody), through the in-flight window.
func (s *Server) resume(ds []*delivery) {
	if len(ds) == 0 {
		return
	}
	s.infMu.Lock()
	for _, d := range ds {
		d.parked = false
		s.inflight[d.id] = d
		s.queueLocked(d)
	}
	sends := s.pumpLocked(time.Now().UnixNano(), nil)
	s.infMu.Unlock()
	s.send(sends)
}

// applyActions applies a worker's actions to c, in order, then calls done.
// When a bind or join made a new subscription and a later action is seen
// by the client (a send, a close), the rest of the actions and done wait,
// off the caller's goroutine, until the NATS server has the subscription
// (interest.afterFlush): a client told it joined can rely on sends to the
// group reaching it, whoever publishes them.
func (s *Server) applyActions(c *conn, actions []bus.Action, done func()) {
	if len(actions) == 0 {
		done()
		return
	}
	sh := c.sh
	sh.mu.Lock()
	// A client that closed meanwhile still takes uid, group and session
	// changes (its later events, the close event included, must see
	// them); sends and closes to it are no-ops.
	joined := false // a bind or join whose subscription is not issued yet
	rx := false     // a receive hold changed: applyRx once unlocked
	for i := range actions {
		a := &actions[i]
		if joined && (a.Type == bus.ActionSend || a.Type == bus.ActionSendValue || a.Type == bus.ActionClose || a.Type == bus.ActionReject) {
			// What the client sees after a bind or join must not
			// overtake its subscription: see interest.go.
			sh.mu.Unlock()
			sh.signal()
			if rx {
				s.applyRx(c)
				rx = false
			}
			s.interest.sync()
			if s.interest.needsFlush() {
				rest := actions[i:]
				s.interest.afterFlush(func() { s.applyActions(c, rest, done) })
				return
			}
			sh.mu.Lock()
			joined = false
		}
		switch a.Type {
		case bus.ActionSend, bus.ActionSendValue:
			fc := frameCache{msg: a.Data, binary: a.Flag}
			if a.Type == bus.ActionSendValue {
				fc.value = &valueCache{neutral: a.Data}
			}
			if frame := fc.get(c); frame != nil {
				sh.enqueueLocked(c, frame)
			} else {
				s.log.Warn("message not sent", "client", c.id(s.id), "err", fc.err)
			}
			continue
		case bus.ActionReject:
			s.rejectLocked(c, int(a.Code), a.Arg)
			continue
		}
		m, ok := mutationOfAction(a)
		if !ok {
			s.stats.badAcks.Add(1)
			continue
		}
		err := m.check()
		var eff uint8
		if err == nil {
			eff, err = s.mutateLocked(c, &m)
		}
		if err != nil {
			s.log.Warn("action not applied", "client", c.id(s.id), "action", int32(a.Type), "err", err)
		}
		if eff&effSubscribe != 0 {
			joined = true
		}
		rx = rx || eff&effRx != 0
	}
	sh.mu.Unlock()
	sh.signal()
	if rx {
		s.applyRx(c)
	}
	// Before the client's next event goes out on the same connection: see
	// interest.go.
	s.interest.sync()
	done()
}

// closeAfterLocked closes c after a final message (ACTION_CLOSE with
// data): force drops what is still queued for c, not the final message;
// then the message is queued (text if valid UTF-8, else binary; TCP:
// framed) and c closes gracefully behind it: flushed, then the close frame
// (WebSocket), then the socket. Caller holds c.sh.mu.
func (s *Server) closeAfterLocked(c *conn, msg []byte, force bool) {
	sh := c.sh
	if c.state != stateOpen {
		return
	}
	frame, err := c.frame(msg, false)
	if err != nil {
		s.log.Warn("final message not sent", "client", c.id(s.id), "err", err)
		sh.closeLocked(c, ReasonCloseRequested, force)
		return
	}
	if force {
		sh.putBufLocked(c.out)
		c.out = nil
		sh.forgetQueueLocked(c)
	}
	sh.enqueueLocked(c, frame)
	sh.closeLocked(c, ReasonCloseRequested, false)
}

// rejectLocked closes c because a handler refused it: WebSocket close code
// 4000+status with the reason.
func (s *Server) rejectLocked(c *conn, status int, reason string) {
	if status < 0 || status > 999 {
		status = 403
	}
	c.sh.closeWithLocked(c, ReasonRejected, 4000+status, reason)
}
