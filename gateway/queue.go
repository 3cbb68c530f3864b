package gateway

// Queue policies (ListenerConfig.QueuePolicy): what happens when a message
// would take a connection's outbound queue over MaxQueueBytes. The queue
// is the bytes waiting in the gateway plus those handed to the socket
// engine and not yet written to the kernel; only the former can be
// dropped, and only as whole frames. Control frames (pongs, heartbeat
// pings) count against the bound too; see controlFitsLocked.
const (
	// QueueDisconnect closes the connection as a slow consumer (reason
	// slow_consumer, WebSocket code 1008) after what the socket engine
	// already holds; the bytes still queued in the gateway are dropped.
	QueueDisconnect = "disconnect"
	// QueueDropOldest drops the oldest whole messages waiting in the
	// gateway until the new one fits; when even an empty gateway queue
	// leaves no room (the engine holds the rest), the new one is dropped
	// too. The gateway hands the socket engine at most half the bound at a
	// time and holds the rest back until those are written, so that the
	// older frames stay droppable.
	QueueDropOldest = "drop_oldest"
	// QueueDropNewest drops the new message and keeps the queue.
	QueueDropNewest = "drop_newest"
)

// queuePolicies lists the policies in the order of stats.dropped.
var queuePolicies = [...]string{QueueDisconnect, QueueDropOldest, QueueDropNewest}

// Indexes of stats.dropped.
const (
	dropDisconnect = iota
	dropOldest
	dropNewest
)

// outQueue records where the frames in a drop_oldest connection's out
// begin and end. Its memory is proportional to the queued frames (4 bytes
// each), so bounded by MaxQueueBytes like the queue itself. It lives in
// shard.queues only while out holds frames, so that conn stays small.
type outQueue struct {
	head int      // bytes at the front of out already dropped
	lens []uint32 // the lengths of the frames in out[head:], oldest first
}

// queuedLocked returns the bytes queued for c and not yet written to the
// kernel: those in out plus those the socket engine holds. Caller holds
// sh.mu.
func (c *conn) queuedLocked() int64 {
	n := int64(len(c.out)) + c.unsent.Load()
	if c.l.cfg.QueuePolicy != QueueDropOldest {
		return n
	}
	if q := c.sh.queues[c]; q != nil {
		n -= int64(q.head)
	}
	return n
}

// appendFrameLocked appends one whole frame to c's out, records its
// boundary under drop_oldest and marks c dirty; the caller signals the
// flusher. The caller applied the queue bound (enqueueLocked,
// controlFitsLocked). Caller holds sh.mu.
func (sh *shard) appendFrameLocked(c *conn, frame []byte) {
	if c.out == nil {
		c.out = sh.getBufLocked(len(frame))
	}
	c.out = append(c.out, frame...)
	noteFrame(c, len(frame))
	sh.markDirtyLocked(c)
}

// noteFrame records that the last n bytes of c.out are one frame, when
// c's policy needs frame boundaries. Caller holds c.sh.mu.
func noteFrame(c *conn, n int) {
	if c.l.cfg.QueuePolicy != QueueDropOldest {
		return
	}
	sh := c.sh
	q := sh.queues[c]
	if q == nil {
		if sh.queues == nil {
			sh.queues = make(map[*conn]*outQueue)
		}
		q = &outQueue{}
		sh.queues[c] = q
	}
	q.lens = append(q.lens, uint32(n))
}

// controlFitsLocked applies the queue bound to a control frame of n bytes
// (a pong, or a heartbeat ping) and reports whether it may be queued.
// Control frames count against MaxQueueBytes like messages but never
// displace one: a control frame that does not fit closes c as a slow
// consumer under disconnect, and is dropped under drop_oldest and
// drop_newest (counted with the listener's policy, like a message; RFC
// 6455 §5.5.3 lets a pong answer only the latest of several pings). So a
// client that pings without reading holds at most MaxQueueBytes, like one
// that is sent more than it reads. (Pongs used to be queued outside the
// bound: one such client took a gateway past 1.6 GB.) Only the one close
// frame of a connection is queued outside the bound. Caller holds sh.mu.
func (sh *shard) controlFitsLocked(c *conn, n int) bool {
	if c.queuedLocked()+int64(n) <= int64(c.l.cfg.MaxQueueBytes) {
		return true
	}
	switch c.l.cfg.QueuePolicy {
	case QueueDropOldest:
		sh.s.stats.dropped[dropOldest].Add(1)
	case QueueDropNewest:
		sh.s.stats.dropped[dropNewest].Add(1)
	default:
		sh.makeRoomLocked(c, n) // the slow-consumer close
	}
	return false
}

// forgetQueueLocked drops c's frame boundaries once its out is taken or
// discarded. Caller holds sh.mu.
func (sh *shard) forgetQueueLocked(c *conn) {
	if sh.queues != nil {
		delete(sh.queues, c)
	}
}

// makeRoomLocked applies c's queue policy to a frame of n bytes that does
// not fit in c's queue, and reports whether the frame may now be queued.
// Caller holds sh.mu.
func (sh *shard) makeRoomLocked(c *conn, n int) bool {
	switch c.l.cfg.QueuePolicy {
	case QueueDropNewest:
		sh.s.stats.dropped[dropNewest].Add(1)
		return false
	case QueueDropOldest:
		return sh.dropOldestLocked(c, n)
	}
	// Slow consumer: drop what is still queued here and close with 1008
	// behind what the socket already holds; a client that never reads
	// again is cut when the close times out.
	sh.s.stats.dropped[dropDisconnect].Add(1)
	sh.putBufLocked(c.out)
	c.out = nil
	sh.forgetQueueLocked(c)
	sh.closeLocked(c, ReasonSlowConsumer, false)
	return false
}

// dropOldestLocked drops c's oldest whole frames still in out until n more
// bytes fit under MaxQueueBytes; if they cannot fit even then, the new
// frame is dropped too. Dropped bytes are skipped with q.head and
// compacted once they are at least half of out, so each byte is moved at
// most once.
func (sh *shard) dropOldestLocked(c *conn, n int) bool {
	limit := int64(c.l.cfg.MaxQueueBytes)
	q := sh.queues[c]
	var dropped uint64
	for q != nil && len(q.lens) > 0 && c.queuedLocked()+int64(n) > limit {
		q.head += int(q.lens[0])
		q.lens = q.lens[1:]
		dropped++
	}
	if q != nil && q.head > 0 {
		switch {
		case len(q.lens) == 0:
			c.out = c.out[:0]
			q.head = 0
		case q.head >= len(c.out)/2:
			k := copy(c.out, c.out[q.head:])
			c.out = c.out[:k]
			q.head = 0
		}
	}
	fits := c.queuedLocked()+int64(n) <= limit
	if !fits {
		dropped++
	}
	if dropped > 0 {
		sh.s.stats.dropped[dropOldest].Add(dropped)
	}
	return fits
}

// takeOutLocked hands c's queued frames to the flusher. Under drop_oldest
// it hands over whole frames up to half of MaxQueueBytes (at least one)
// and keeps the rest queued here, still droppable: were the socket engine
// to hold a whole bound of unsent bytes, nothing could be dropped to make
// room and every newer message would be lost instead of the older ones.
// Caller holds sh.mu.
func (sh *shard) takeOutLocked(c *conn) []byte {
	buf := c.out
	c.out = nil
	q := sh.queues[c]
	if q == nil {
		return buf
	}
	buf = buf[min(q.head, len(buf)):]
	half := c.l.cfg.MaxQueueBytes / 2
	n, frames := 0, 0
	for _, l := range q.lens {
		if frames > 0 && n+int(l) > half {
			break
		}
		n += int(l)
		frames++
	}
	if frames == len(q.lens) {
		delete(sh.queues, c)
		return buf
	}
	// The rest moves to a buffer of its own: buf belongs to the flusher
	// until it is written.
	rest := buf[n:]
	c.out = append(sh.getBufLocked(len(rest)), rest...)
	q.head = 0
	q.lens = append(q.lens[:0], q.lens[frames:]...)
	return buf[:n]
}

// holdLocked reports whether c's frames stay in out for now: under
// drop_oldest, while the socket engine still holds earlier bytes, so that
// they remain droppable. A held connection is released by releaseLocked
// once the engine has written everything (its written-size callback wakes
// the flusher). Caller holds sh.mu.
func (sh *shard) holdLocked(c *conn) bool {
	if c.l.cfg.QueuePolicy != QueueDropOldest || c.state != stateOpen || c.unsent.Load() == 0 {
		return false
	}
	if !c.held {
		c.held = true
		sh.held = append(sh.held, c)
	}
	return true
}

// releaseLocked marks dirty again the held connections whose socket has
// caught up (or that are closing). Caller holds sh.mu.
func (sh *shard) releaseLocked() {
	if len(sh.held) == 0 {
		return
	}
	keep := sh.held[:0]
	for _, c := range sh.held {
		if c.state == stateOpen && c.unsent.Load() > 0 {
			keep = append(keep, c)
			continue
		}
		c.held = false
		switch {
		case c.state == stateClosed:
			sh.forgetQueueLocked(c) // out was discarded with the connection
		case len(c.out) > 0:
			sh.markDirtyLocked(c)
		}
	}
	clear(sh.held[len(keep):])
	sh.held = keep
}

// droppedStats returns the messages dropped at the queue bound, by policy.
// Under disconnect it counts the message that hit the bound, once per
// slow-consumer close.
func (s *Server) droppedStats() map[string]uint64 {
	m := make(map[string]uint64, len(queuePolicies))
	for i, p := range queuePolicies {
		m[p] = s.stats.dropped[i].Load()
	}
	return m
}
