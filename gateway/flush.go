package gateway

import (
	"syscall"

	"github.com/lesismal/nbio"
)

// Batched socket writes: the flusher hands the frames of the connections
// a flush found dirty to the kernel in one io_uring submission per
// sendRing.size() sockets (uring_linux.go) instead of one write(2) each,
// when the platform has io_uring, Config.NoIOUring is off and at least
// minRingBatch plain sockets are ready to take them. A socket goes the
// usual way, through the engine's Write, when it is TLS or UDP, when the
// engine still holds earlier bytes of it, or when the kernel took only
// part of the frames (the engine then keeps the rest and waits for the
// socket to drain, as for any write).

// minRingBatch is the fewest sockets a flush sends through the ring: one
// io_uring_enter costs about one write(2), so a flush of one or two
// sockets gains nothing.
const minRingBatch = 3

// ringSend is one socket's part of a ring submission.
type ringSend struct {
	it *flushItem
	nc *nbio.Conn
}

// writeItems writes each item's buffer to its connection's socket and
// counts the bytes written.
func (sh *shard) writeItems(items []flushItem) {
	if sh.ring != nil && len(items) >= minRingBatch {
		sh.ringWrite(items)
	}
	for i := range items {
		sh.writeOne(&items[i])
	}
}

// writeOne writes it through its transport (the engine's Write).
func (sh *shard) writeOne(it *flushItem) {
	if it.done {
		return // sent through the ring
	}
	n := len(it.buf) // already counted in unsent by takeDirty
	if err := it.c.t.write(it.buf); err == nil {
		sh.sent(it.c, n)
	} // errUDPCounted: the UDP transport counted its datagrams
}

func (sh *shard) sent(c *conn, n int) {
	c.bytesOut.Add(uint64(n))
	sh.bytesOut.Add(uint64(n))
}

// ringSock returns the engine connection of c's socket when the ring may
// write it: a plain (not TLS) TCP or WebSocket transport.
func ringSock(c *conn) *nbio.Conn {
	if s := sockOf(c.t); s != nil && s.tls == nil {
		return s.nc
	}
	return nil
}

// ringWrite sends what it can of items through the ring and marks those
// done; the rest are for writeOne.
//
// Each socket in a submission is locked with the engine's lock and
// checked open first: the engine marks a socket closed under that lock
// before it closes the descriptor, so the number cannot be closed and
// given to a newly accepted client while the kernel sends on it. Holding
// several of these locks at once cannot deadlock: no holder of one waits
// for anything but a system call (the engine's close, closeWrite,
// setSocketReading), and each connection belongs to one shard, whose
// flusher alone takes more than one.
func (sh *shard) ringWrite(items []flushItem) {
	r := sh.ring
	for start := 0; start < len(items) && sh.ring != nil; {
		batch := sh.ringBatch[:0]
		fds, bufs := sh.ringFds[:0], sh.ringBufs[:0]
		i := start
		for ; i < len(items) && len(batch) < r.size(); i++ {
			it := &items[i]
			nc := ringSock(it.c)
			if nc == nil {
				continue
			}
			nc.Lock()
			closed, _ := nc.IsClosed()
			// unsent counts this buffer; more means the engine still
			// holds earlier bytes, which must go first.
			if closed || it.c.unsent.Load() != int64(len(it.buf)) {
				nc.Unlock()
				continue
			}
			batch = append(batch, ringSend{it: it, nc: nc})
			fds = append(fds, nc.Hash())
			bufs = append(bufs, it.buf)
		}
		start = i
		if len(batch) == 0 {
			continue
		}
		res := sh.ringRes[:len(batch)]
		sh.ringCalls.Add(1)
		if err := r.send(fds, bufs, res); err != nil {
			sh.ringFailed(batch, err)
			return
		}
		for k, rs := range batch {
			sh.ringDone(rs, res[k])
		}
		clear(batch)
		clear(bufs)
		sh.ringBatch, sh.ringFds, sh.ringBufs = batch[:0], fds[:0], bufs[:0]
	}
}

// ringDone finishes one socket of a submission that returned res (bytes
// sent, or a negative errno) and unlocks it.
func (sh *shard) ringDone(rs ringSend, res int32) {
	it, nc := rs.it, rs.nc
	n := len(it.buf)
	switch {
	case int(res) == n:
		onWrittenSize(nc, nil, n)
		nc.Unlock()
		sh.sent(it.c, n)
		sh.ringWhole.Add(1)
		it.done = true
	case res >= 0 || syscall.Errno(-res) == syscall.EAGAIN:
		// The socket's buffer is full: the engine keeps the rest (its
		// Write finds EAGAIN too and waits for the socket to drain).
		sh.ringShort.Add(1)
		sent := max(int(res), 0)
		if sent > 0 {
			onWrittenSize(nc, nil, sent)
		}
		nc.Unlock()
		if _, err := nc.Write(it.buf[sent:]); err == nil {
			sh.sent(it.c, n)
		}
		it.done = true
	case syscall.Errno(-res) == syscall.EINVAL:
		// A kernel whose io_uring has no send: give the ring up.
		nc.Unlock()
		sh.dropRing("io_uring has no send operation")
		// writeOne writes it
	default:
		// A reset or broken pipe: the engine's Write meets the same
		// error and closes the socket as it would have.
		nc.Unlock()
	}
}

// ringFailed handles a submission the kernel refused as a whole (not
// reached with a ring of one goroutine): the sends' outcome is unknown,
// so their connections are closed rather than sent the bytes twice, the
// buffers are left to the garbage collector, and the ring is given up.
func (sh *shard) ringFailed(batch []ringSend, err error) {
	for _, rs := range batch {
		rs.nc.Unlock()
		rs.it.buf, rs.it.done = nil, true
		rs.it.c.t.close()
	}
	sh.dropRing(err.Error())
}

// startRing gives the flusher its ring, unless Config.NoIOUring is set or
// the kernel refuses one.
func (sh *shard) startRing() {
	if sh.s.cfg.NoIOUring {
		return
	}
	r, err := newSendRing()
	if err != nil {
		sh.s.log.Debug("batched socket writes off", "err", err)
		return
	}
	sh.ring = r
	sh.ringBatch = make([]ringSend, 0, r.size())
	sh.ringFds = make([]int, 0, r.size())
	sh.ringBufs = make([][]byte, 0, r.size())
	sh.ringRes = make([]int32, r.size())
}

// dropRing stops using the ring; the flusher writes with write(2) from
// now on.
func (sh *shard) dropRing(why string) {
	if sh.ring == nil {
		return
	}
	if why != "" {
		sh.s.log.Warn("batched socket writes off; writing each socket on its own", "reason", why)
	}
	sh.ring.close()
	sh.ring = nil
}
