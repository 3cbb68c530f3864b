package gateway

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// shard owns a subset of the connections: their state, their part of the
// uid and group indexes, and the goroutine that writes to their sockets.
type shard struct {
	s  *Server
	mu sync.Mutex
	// conns maps sequence numbers to open (or closing) connections.
	conns map[uint64]*conn
	// order holds connections by ascending sequence number for cursor
	// pagination; closed ones stay as holes until compaction.
	order []*conn
	holes int
	// The last backlog sample of the shard (pressure.go): the bytes
	// queued, and msgsOut when it was taken.
	sampledQueued int64
	sampledActive int64 // of sampledQueued, that of connections with nothing pending in the engine
	sampledMsgs   uint64
	uids          map[string][]*conn
	groups        map[string]map[*conn]struct{}
	// dirty connections have frames in out waiting for the flush.
	dirty []*conn
	// draining connections wait for their socket to drain before closing.
	draining []*conn
	// kill holds connections to close at once, outside the lock.
	kill []*conn
	// held connections keep their frames until their socket catches up
	// (drop_oldest; see queue.go).
	held []*conn
	// wheel holds the connections by when the heartbeat sweep next looks
	// at them (wheel.go); empty until the first connection that needs it.
	wheel dueWheel
	// queues holds the frame boundaries of drop_oldest connections that
	// have frames in out (queue.go); entries go when out is taken.
	queues map[*conn]*outQueue
	// free holds written buffers for reuse (at most maxFree), so that an
	// idle connection holds none and a busy one allocates none.
	free [][]byte

	// rxmu orders the input of held connections (rx.go): the read path
	// of a connection with a hold and Server.applyRx run under it, so
	// that a stash reaches the protocol before what is read after it.
	rxmu sync.Mutex
	// holds are the connections with a receive hold that have a stash or
	// a confirm timer, guarded by heldMu (a leaf); nil until the first.
	heldMu sync.Mutex
	holds  map[*conn]*rxHold

	// Counters for Stats: msgsOut is guarded by mu; the others are written
	// by one goroutine at a time (poller, flusher) and read by Stats.
	msgsOut  uint64
	msgsIn   atomic.Uint64
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64

	// ring batches the flusher's socket writes (flush.go); nil when off.
	// The flusher alone uses it and the slices below, which hold one
	// submission.
	ring      *sendRing
	ringBatch []ringSend
	ringFds   []int
	ringBufs  [][]byte
	ringRes   []int32
	// What the ring did, for tests: submissions, sockets sent whole,
	// sockets the kernel took only part of (or none: EAGAIN).
	ringCalls, ringWhole, ringShort atomic.Uint64

	wake chan struct{} // capacity 1: a flush is wanted
	quit chan struct{}
	done chan struct{}
}

func newShard(s *Server) *shard {
	return &shard{
		s:      s,
		conns:  make(map[uint64]*conn),
		uids:   make(map[string][]*conn),
		groups: make(map[string]map[*conn]struct{}),
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// signal asks the flusher to run; it never blocks.
func (sh *shard) signal() {
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// add registers a new open connection.
func (sh *shard) add(c *conn) { sh.addAfter(c, nil) }

// orderIndex returns the position in sh.order of the first connection
// whose sequence number is seq or more. Caller holds sh.mu.
func (sh *shard) orderIndex(seq uint64) int {
	i, _ := slices.BinarySearchFunc(sh.order, seq, func(c *conn, seq uint64) int { return cmp.Compare(c.seq, seq) })
	return i
}

// addAfter registers a new open connection after running preamble (when
// not nil) under the same lock: what preamble writes reaches the socket
// before any frame queued for c, and anyone who saw it finds c registered.
func (sh *shard) addAfter(c *conn, preamble func()) {
	sh.mu.Lock()
	if preamble != nil {
		preamble()
	}
	sh.conns[c.seq] = c
	sh.order = append(sh.order, c)
	sh.scheduleLocked(c)
	sh.mu.Unlock()
}

// enqueueLocked appends frame to c's outbound buffer. Caller holds sh.mu
// and calls signal after its batch of enqueues. At the queue bound the
// listener's queue policy applies (queue.go).
func (sh *shard) enqueueLocked(c *conn, frame []byte) {
	if c.state != stateOpen {
		return
	}
	if c.queuedLocked()+int64(len(frame)) > int64(c.l.cfg.MaxQueueBytes) && !sh.makeRoomLocked(c, len(frame)) {
		return
	}
	sh.appendFrameLocked(c, frame)
	c.msgsOut++
	sh.msgsOut++
}

// killLocked drops c's queued data and has the flusher close its socket:
// the engine calls back into the hub on close, so never under sh.mu.
func (sh *shard) killLocked(c *conn) {
	sh.putBufLocked(c.out)
	c.out = nil
	sh.forgetQueueLocked(c)
	c.closeAt = 0
	sh.kill = append(sh.kill, c)
	sh.signal()
}

func (sh *shard) markDirtyLocked(c *conn) {
	if !c.dirty {
		c.dirty = true
		sh.dirty = append(sh.dirty, c)
	}
}

// closeLocked starts closing c with reason's close code (see closeWithLocked).
func (sh *shard) closeLocked(c *conn, reason CloseReason, force bool) {
	if force {
		if c.state == stateOpen {
			c.reason = reason
			sh.s.stats.closes[reason].Add(1)
		}
		if c.state != stateClosed {
			c.state = stateClosing
			c.shut.Store(true)
			sh.killLocked(c)
		}
		return
	}
	sh.closeWithLocked(c, reason, reason.wsCode(), reason.String())
}

// closeWithLocked closes c gracefully: a close frame with code and text
// (WebSocket) is queued after the data already queued; once everything is
// written the gateway sends FIN and waits up to CloseTimeout for the peer to
// close (RFC 6455 §7.1.1), discarding what it still sends, then closes the
// socket. The connection leaves the hub when the engine reports the close.
func (sh *shard) closeWithLocked(c *conn, reason CloseReason, code int, text string) {
	if c.state != stateOpen {
		return
	}
	c.reason = reason
	c.out = c.l.appendClose(c.out, code, text)
	c.state = stateClosing
	c.shut.Store(true)
	c.closeAt = time.Now().Add(sh.s.cfg.CloseTimeout).UnixNano()
	sh.markDirtyLocked(c)
	sh.signal()
	sh.s.stats.closes[reason].Add(1)
}

// remove takes c out of the hub once its socket is closed and returns
// false if it was already removed.
func (sh *shard) remove(c *conn, reason CloseReason) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c.state == stateClosed {
		return false
	}
	if c.state == stateOpen {
		c.reason = reason
		sh.s.stats.closes[reason].Add(1)
	}
	c.state = stateClosed
	c.shut.Store(true)
	if c.rx.Load() != 0 {
		sh.dropHold(c)
	}
	delete(sh.conns, c.seq)
	sh.forgetLocked(c)
	sh.holes++
	if sh.holes > 64 && sh.holes > len(sh.order)/2 {
		sh.order = slices.DeleteFunc(sh.order, func(x *conn) bool { return x.state == stateClosed })
		sh.holes = 0
	}
	if c.uid != "" {
		sh.unindexUIDLocked(c)
	}
	for _, g := range c.groups {
		sh.unindexGroupLocked(c, g)
	}
	sh.putBufLocked(c.out)
	c.out = nil
	sh.forgetQueueLocked(c)
	return true
}

func (sh *shard) unindexUIDLocked(c *conn) {
	list := sh.uids[c.uid]
	if i := slices.Index(list, c); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(sh.uids, c.uid)
		sh.s.interest.changeLocked(interestUID, c.uid, -1)
	} else {
		sh.uids[c.uid] = list
	}
}

func (sh *shard) unindexGroupLocked(c *conn, g string) {
	set, ok := sh.groups[g]
	if !ok {
		return
	}
	delete(set, c)
	if len(set) == 0 {
		delete(sh.groups, g)
		sh.s.interest.changeLocked(interestGroup, g, -1)
	}
}

// bindLocked binds c to uid ("" unbinds). Last bind wins. A connection
// already removed from the hub only records it, for its close event.
func (sh *shard) bindLocked(c *conn, uid string) {
	if c.uid == uid {
		return
	}
	if c.state == stateClosed {
		c.uid = uid
		return
	}
	if c.uid != "" {
		sh.unindexUIDLocked(c)
	}
	c.uid = uid
	if uid != "" {
		if len(sh.uids[uid]) == 0 {
			sh.s.interest.changeLocked(interestUID, uid, 1)
		}
		sh.uids[uid] = append(sh.uids[uid], c)
	}
}

func (sh *shard) joinLocked(c *conn, g string) {
	if c.hasGroup(g) {
		return
	}
	c.groups = withGroup(c.groups, g)
	if c.state == stateClosed {
		return // recorded for the close event only
	}
	set := sh.groups[g]
	if set == nil {
		set = make(map[*conn]struct{})
		sh.groups[g] = set
		sh.s.interest.changeLocked(interestGroup, g, 1)
	}
	set[c] = struct{}{}
}

func (sh *shard) leaveLocked(c *conn, g string) {
	if !c.hasGroup(g) {
		return
	}
	c.groups = withoutGroup(c.groups, g)
	if c.state != stateClosed {
		sh.unindexGroupLocked(c, g)
	}
}

// ungroupLocked dissolves group g in this shard; members stay connected.
func (sh *shard) ungroupLocked(g string) {
	set, ok := sh.groups[g]
	if !ok {
		return
	}
	for c := range set {
		c.groups = withoutGroup(c.groups, g)
	}
	delete(sh.groups, g)
	sh.s.interest.changeLocked(interestGroup, g, -1)
}

// flushItem is one connection's frames taken out for writing.
type flushItem struct {
	c    *conn
	buf  []byte // back to the shard's free buffers once written, unless nil
	done bool   // written (or given up) by the ring
}

// drainTick is how often the flusher moves graceful closes along while
// some are in progress (checkDraining). With none it does not tick: an
// idle shard costs no wake-up.
const drainTick = 50 * time.Millisecond

// run is the shard's flusher: it writes every dirty connection's frames in
// one write each, and closes connections whose graceful close is done.
func (sh *shard) run() {
	defer close(sh.done)
	sh.startRing()
	defer sh.dropRing("")
	var items []flushItem
	var returned [][]byte
	tick := time.NewTimer(drainTick)
	tick.Stop()
	var tickC <-chan time.Time // nil while nothing drains
	arm := func(draining bool) {
		switch {
		case draining && tickC == nil:
			tick.Reset(drainTick)
			tickC = tick.C
		case !draining && tickC != nil:
			tick.Stop()
			tickC = nil
		}
	}
	defer tick.Stop()
	for {
		select {
		case <-sh.wake:
		case <-tickC:
			tickC = nil
			arm(sh.checkDraining())
			continue
		case <-sh.quit:
			return
		}
		var kill []*conn
		items, kill = sh.takeDirty(items[:0], returned)
		clear(returned)
		returned = returned[:0]
		for _, c := range kill {
			c.t.close()
		}
		sh.writeItems(items)
		for i := range items {
			if b := items[i].buf; b != nil {
				returned = append(returned, b)
			}
			items[i] = flushItem{}
		}
		arm(sh.checkDraining())
	}
}

func (sh *shard) takeDirty(items []flushItem, written [][]byte) ([]flushItem, []*conn) {
	sh.mu.Lock()
	for _, b := range written {
		sh.putBufLocked(b)
	}
	kill := sh.kill
	sh.kill = nil
	sh.releaseLocked()
	for _, c := range sh.dirty {
		c.dirty = false
		if len(c.out) > 0 && !sh.holdLocked(c) {
			buf := sh.takeOutLocked(c)
			// Counted as unsent in the same critical section that empties
			// out, so that queuedLocked never misses bytes on their way to
			// the socket and MaxQueueBytes holds.
			c.unsent.Add(int64(len(buf)))
			items = append(items, flushItem{c: c, buf: buf})
			if len(c.out) > 0 {
				sh.holdLocked(c) // drop_oldest kept some back: next once these are written
			}
		}
		if (c.state == stateClosing || c.state == stateLinger) && c.closeAt != 0 {
			sh.draining = append(sh.draining, c)
		}
	}
	clear(sh.dirty)
	sh.dirty = sh.dirty[:0]
	sh.mu.Unlock()
	return items, kill
}

// checkDraining moves graceful closes along: a connection whose queue is
// written gets FIN and lingers; one whose linger (or whole close) passed
// CloseTimeout is closed. It reports whether closes are still in progress.
func (sh *shard) checkDraining() bool {
	sh.mu.Lock()
	if len(sh.draining) == 0 {
		sh.mu.Unlock()
		return false
	}
	now := time.Now().UnixNano()
	var toClose, toFin []*conn
	keep := sh.draining[:0]
	for _, c := range sh.draining {
		switch {
		case c.state == stateClosed || c.closeAt == 0:
			// gone, or killed meanwhile
		case now >= c.closeAt:
			c.closeAt = 0
			toClose = append(toClose, c)
		case c.state == stateLinger || c.dirty || c.unsent.Load() > 0 || len(c.out) > 0:
			keep = append(keep, c) // waiting for the peer, or more to write first
		default:
			c.state = stateLinger
			c.closeAt = now + int64(min(sh.s.cfg.CloseTimeout, maxLinger))
			toFin = append(toFin, c)
			keep = append(keep, c)
		}
	}
	clear(sh.draining[len(keep):])
	sh.draining = keep
	sh.mu.Unlock()
	for _, c := range toFin {
		c.t.closeWrite()
	}
	for _, c := range toClose {
		c.t.close()
	}
	return len(keep) > 0
}

// maxLinger bounds how long a closed connection waits, after its FIN, for
// the peer to close: long enough for data in flight to arrive and be
// discarded instead of causing a reset.
const maxLinger = time.Second

// Buffer reuse bounds: at most maxFree buffers per shard, none larger than
// maxFreeCap bytes (larger ones are left to the garbage collector).
const (
	maxFree    = 16384
	maxFreeCap = 64 << 10
)

func (sh *shard) getBufLocked(n int) []byte {
	if k := len(sh.free); k > 0 && n <= maxFreeCap {
		b := sh.free[k-1]
		sh.free[k-1] = nil
		sh.free = sh.free[:k-1]
		return b
	}
	return make([]byte, 0, max(n, 256))
}

func (sh *shard) putBufLocked(b []byte) {
	if b == nil || cap(b) > maxFreeCap || len(sh.free) >= maxFree {
		return
	}
	sh.free = append(sh.free, b[:0])
}
