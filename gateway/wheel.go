package gateway

import "slices"

// maxWheel bounds a shard's due wheel in ticks (sweep periods). A
// connection due further out than the wheel spans is placed in its last
// tick and placed again from there (an early look that does nothing).
const maxWheel = 4096

// dueWheel holds a shard's connections by the sweep tick at which each
// next needs the heartbeat sweep: its next ping falls due or its idle
// timeout ends. A sweep looks only at the connections of the ticks that
// passed, not at every connection: an idle connection that answers its
// pings is looked at about twice per ping round (the look that pings it
// and the one that finds its pong) instead of once per sweep period (26
// times with the defaults), which at a million connections is the
// difference between a million cache misses a second and 80,000.
//
// Tick t is the sweep period that begins at t × every + offset (unix ms),
// offset being the process's sweep phase, so that a sweep at its instant
// finds the connections due up to that instant. A connection is in at most
// one bucket (conn.dueTick ≠ 0: ticks count from the epoch, so none is 0);
// one that closes stays there until its tick comes or a compaction drops
// it. Guarded by sh.mu.
type dueWheel struct {
	every, offset int64 // ms
	buckets       [][]*conn
	done          int64  // the last tick swept: the buckets after it are to come
	entries       int    // connections in the buckets, closed ones included
	dead          int    // closed connections in the buckets
	looks         uint64 // connections looked at, for tests
}

// initWheel sizes the wheel for the longest ping interval or idle timeout
// of the server's listeners (maxWheel without listeners, as in unit tests)
// and starts it at nowMs. Caller holds sh.mu.
func (sh *shard) initWheel(nowMs int64) {
	w := &sh.wheel
	w.every = max(sh.s.sweepEvery.Milliseconds(), 1)
	w.offset = sh.s.sweepPhase.Milliseconds()
	n := maxWheel
	if len(sh.s.listeners) > 0 {
		var longest int64
		for _, l := range sh.s.listeners {
			longest = max(longest, l.cfg.PingInterval.Milliseconds(), l.cfg.IdleTimeout.Milliseconds())
		}
		n = int(min(max(longest/w.every+2, 4), maxWheel))
	}
	w.buckets = make([][]*conn, n)
	w.done = w.tick(nowMs)
}

// tick returns the tick whose sweep period holds ms.
func (w *dueWheel) tick(ms int64) int64 { return floorDiv(ms-w.offset, w.every) }

// placeLocked puts c, not in the wheel, in the bucket of the first sweep at
// or after dueMs, and after tick floor: a connection placed while a sweep
// runs goes after the ticks that sweep handles. Caller holds sh.mu.
func (sh *shard) placeLocked(c *conn, dueMs, floor int64) {
	w := &sh.wheel
	t := max(-floorDiv(w.offset-dueMs, w.every), floor+1, w.done+1) // ceil((dueMs-offset)/every)
	c.dueTick = t
	slot := min(t, w.done+int64(len(w.buckets))) % int64(len(w.buckets))
	w.buckets[slot] = append(w.buckets[slot], c)
	w.entries++
}

// scheduleLocked enters a newly registered connection: its first look is
// due after its listener's ping interval or idle timeout, whichever ends
// first. A listener with neither never needs the sweep. Caller holds sh.mu.
func (sh *shard) scheduleLocked(c *conn) {
	if sh.s.sweepEvery <= 0 || c.l == nil {
		return
	}
	last := c.lastActiveMs.Load()
	due, ok := c.nextDue(last, 0)
	if !ok {
		return
	}
	if sh.wheel.buckets == nil {
		sh.initWheel(last)
	}
	sh.placeLocked(c, due, sh.wheel.tick(last))
}

// nextDue returns when c next needs a look, given its last activity and
// quiet (ms): the end of its next whole ping interval of quiet or of its
// idle timeout, whichever comes first; false when its listener has
// neither.
func (c *conn) nextDue(last, quiet int64) (int64, bool) {
	due, ok := int64(0), false
	if every := c.l.cfg.PingInterval.Milliseconds(); every > 0 && c.l.ping != nil {
		due, ok = last+(max(quiet, 0)/every+1)*every, true
	}
	if idle := c.l.cfg.IdleTimeout.Milliseconds(); idle > 0 && (!ok || last+idle < due) {
		due, ok = last+idle, true
	}
	return due, ok
}

// forgetLocked notes that c, in the wheel, closed; enough closed ones are
// dropped at once. Caller holds sh.mu.
func (sh *shard) forgetLocked(c *conn) {
	w := &sh.wheel
	if c.dueTick == 0 {
		return
	}
	w.dead++
	if w.dead > 64 && w.dead > w.entries/2 {
		for i, b := range w.buckets {
			w.buckets[i] = slices.DeleteFunc(b, func(x *conn) bool {
				if x.state == stateClosed {
					x.dueTick = 0
					return true
				}
				return false
			})
		}
		w.entries -= w.dead
		w.dead = 0
	}
}

// sweepDueLocked looks at up to sweepChunk connections of the ticks up to
// that of nowMs that were not swept yet, and reports whether it
// queued a ping and whether connections of those ticks are left. Caller
// holds sh.mu.
func (sh *shard) sweepDueLocked(nowMs int64) (pinged, more bool) {
	w := &sh.wheel
	if w.buckets == nil {
		return false, false
	}
	target := w.tick(nowMs)
	n := int64(len(w.buckets))
	w.done = max(w.done, target-n) // after a stall longer than the wheel: every bucket once
	looked := 0
	for w.done < target {
		b := &w.buckets[(w.done+1)%n]
		for len(*b) > 0 {
			if looked == sweepChunk {
				return pinged, true
			}
			looked++
			w.looks++
			c := (*b)[len(*b)-1]
			(*b)[len(*b)-1] = nil
			*b = (*b)[:len(*b)-1]
			w.entries--
			due := c.dueTick
			c.dueTick = 0
			switch {
			case c.state == stateClosed:
				w.dead--
			case due > target: // placed early: the wheel is shorter than its wait
				sh.placeLocked(c, due*w.every+w.offset, target)
			default:
				p, next, stay := sh.sweepConnLocked(c, nowMs)
				pinged = pinged || p
				if stay {
					sh.placeLocked(c, next, target)
				}
			}
		}
		if cap(*b) > 256 && cap(*b) > 4*w.entries/int(n) {
			*b = nil // a burst's bucket does not keep its peak
		}
		w.done++
	}
	return pinged, false
}

// floorDiv returns ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
