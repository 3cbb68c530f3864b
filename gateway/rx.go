package gateway

import (
	"time"

	"github.com/gatework/gatework/bus"
)

// Receive holds: the bits of conn.rx. A connection with a hold is not
// read: its socket leaves the poller's read interest, so the kernel's
// receive buffer fills and TCP flow control stops the client. Nothing is
// lost: what the socket holds is read once the last hold is gone.
const (
	// rxPaused: PauseRecv, until ResumeRecv.
	rxPaused uint32 = 1 << iota
	// rxUnconfirmed: a connection of a delay_receive listener, until
	// Confirm (or closed at confirm_timeout).
	rxUnconfirmed
	// rxHeld: the socket's reading is off, or what it read goes to the
	// stash. Set and cleared under shard.rxmu by applyRx and holdInput.
	rxHeld
)

// rxWanted are the holds asked for; rxHeld is whether they are in force.
const rxWanted = rxPaused | rxUnconfirmed

// maxStash bounds the input a held connection's socket may still deliver
// (the socket engine turns reading back on when a write to the socket
// blocks or completes; the gateway turns it off again at once). A
// connection over it is closed with event_backlog.
const maxStash = 1 << 20

// rxHold is a held connection's state, in shard.holds while it has one.
type rxHold struct {
	// stash is the input read while held, in order; it goes to the
	// protocol before anything read after the hold ends.
	stash []byte
	// timer closes an unconfirmed connection at confirm_timeout.
	timer *time.Timer
}

// errNoHold is the answer to a receive change on a connection whose
// socket cannot stop reading (a UDP peer shares its listener's socket).
var errNoHold = codeErr(bus.ErrCodeInvalidRequest, "a udp client cannot pause or delay receiving (its datagrams share the listener's socket)")

// holdLocked applies a receive change to c: the hold bits change now, so
// that input that arrives from here on is held (or released, once
// applyRx ran); the socket follows in applyRx, outside the shard lock.
// Caller holds c.sh.mu.
func (s *Server) holdLocked(c *conn, k mutKind) (uint8, error) {
	if c.l.cfg.Protocol == "udp" {
		if k == mutConfirm {
			return 0, nil // never unconfirmed: delay_receive is refused for udp
		}
		return 0, errNoHold
	}
	if c.state != stateOpen {
		return 0, nil
	}
	switch k {
	case mutPauseRecv:
		c.rx.Or(rxPaused)
	case mutResumeRecv:
		c.rx.And(^rxPaused)
	case mutConfirm:
		c.rx.And(^rxUnconfirmed)
	}
	return effRx, nil
}

// holdNew starts the hold of a connection of a delay_receive listener,
// before it is registered: its input is held from the first byte, and
// it is closed with reason confirm_timeout unless Confirm comes first.
func (s *Server) holdNew(c *conn) {
	c.rx.Store(rxUnconfirmed | rxHeld)
	h := &rxHold{}
	h.timer = time.AfterFunc(c.l.cfg.ConfirmTimeout, func() {
		if c.rx.Load()&rxUnconfirmed != 0 {
			s.close(c, ReasonConfirmTimeout, false)
		}
	})
	sh := c.sh
	sh.heldMu.Lock()
	if sh.holds == nil {
		sh.holds = make(map[*conn]*rxHold)
	}
	sh.holds[c] = h
	sh.heldMu.Unlock()
	s.setReading(c, false)
}

// applyRx makes c's socket follow its holds: reading turned off when a
// hold was asked for, or, when the last one is gone, the stash handed to
// the protocol and reading turned back on. It runs outside the shard
// locks (the protocol takes them).
func (s *Server) applyRx(c *conn) {
	if ts := c.tlsSock(); ts != nil {
		ts.rmu.Lock() // the protocol's input of a TLS socket is read under it
		defer ts.rmu.Unlock()
	}
	sh := c.sh
	sh.rxmu.Lock()
	defer sh.rxmu.Unlock()
	bits := c.rx.Load()
	switch {
	case bits&rxWanted != 0 && bits&rxHeld == 0:
		c.rx.Or(rxHeld)
		s.setReading(c, false)
	case bits&rxWanted == 0 && bits&rxHeld != 0:
		h := sh.dropHold(c)
		if h != nil && len(h.stash) > 0 && !c.closing() {
			s.input(c, h.stash)
		}
		c.lastActiveMs.Store(nowMs()) // the idle clock starts over
		c.rx.And(^rxHeld)
		s.setReading(c, true)
	}
}

// holdInput is the read path of a connection with a hold (c.rx not 0):
// it keeps data in the stash and turns reading off again, and reports
// true; or, once the hold is gone, reports false and the caller handles
// data as usual.
func (s *Server) holdInput(c *conn, data []byte) bool {
	sh := c.sh
	sh.rxmu.Lock()
	bits := c.rx.Load()
	if bits == 0 {
		sh.rxmu.Unlock()
		return false
	}
	c.rx.Or(rxHeld)
	sh.heldMu.Lock()
	if sh.holds == nil {
		sh.holds = make(map[*conn]*rxHold)
	}
	h := sh.holds[c]
	if h == nil {
		h = &rxHold{}
		sh.holds[c] = h
	}
	over := len(h.stash)+len(data) > maxStash
	if !over {
		h.stash = append(h.stash, data...)
	}
	sh.heldMu.Unlock()
	s.setReading(c, false)
	sh.rxmu.Unlock()
	if over {
		s.close(c, ReasonEventBacklog, true)
	}
	return true
}

// dropHold removes c's hold state and stops its confirm timer; it
// returns the state, nil when there was none. heldMu is a leaf: it may
// be taken under any gateway lock.
func (sh *shard) dropHold(c *conn) *rxHold {
	sh.heldMu.Lock()
	h := sh.holds[c]
	delete(sh.holds, c)
	sh.heldMu.Unlock()
	if h != nil && h.timer != nil {
		h.timer.Stop()
	}
	return h
}

// holdBytes returns the input held in the stashes of the shard's
// connections.
func (sh *shard) holdBytes() int {
	sh.heldMu.Lock()
	defer sh.heldMu.Unlock()
	n := 0
	for _, h := range sh.holds {
		n += len(h.stash)
	}
	return n
}

// input hands data, read from c's socket while it was held, to c's
// protocol as the read path would have.
func (s *Server) input(c *conn, data []byte) {
	switch t := c.t.(type) {
	case *tcpTransport:
		c.l.eng.(*tcpEngine).input(t, data)
	case *wsTransport:
		c.l.eng.(*wsEngine).frames(t, data)
	}
}

// setReading turns the reading of c's socket off or on.
func (s *Server) setReading(c *conn, on bool) {
	sk := c.sock()
	if sk == nil {
		return
	}
	if err := setSocketReading(sk.nc, on); err != nil {
		s.log.Warn("socket reading not changed", "client", c.id(s.id), "on", on, "err", err)
	}
}

// sock returns the socket of c's transport; nil for a UDP peer.
func (c *conn) sock() *sock {
	switch t := c.t.(type) {
	case *tcpTransport:
		return &t.sock
	case *wsTransport:
		return &t.sock
	}
	return nil
}

// tlsSock returns the TLS record layer of c's socket, nil without TLS.
func (c *conn) tlsSock() *tlsSock {
	if sk := c.sock(); sk != nil {
		return sk.tls
	}
	return nil
}

// HeldBytes returns the input the gateway holds for connections whose
// receiving is paused or not yet confirmed (read from their sockets
// before reading stopped). The rest of what such clients send waits in
// their sockets' kernel buffers, and then at the clients (TCP flow
// control). It is safe for concurrent use.
func (s *Server) HeldBytes() int {
	n := 0
	for _, sh := range s.shards {
		n += sh.holdBytes()
	}
	return n
}
