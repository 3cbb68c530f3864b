package gateway

import (
	"bytes"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/gatework/gatework/bus"
)

// The upgrade hook (ListenerConfig.UpgradeHook): the workers answer a
// WebSocket upgrade before its 101 is written.
//
// A valid upgrade request is not answered at once: its connection is made
// (not yet in the hub: no query counts it, no send reaches it) and one
// event batch with EVENT_WEBSOCKET_CONNECT, Event.BeforeUpgrade set, goes
// to the workers like any batch (in-flight window, redelivery, nacks). The
// socket waits on the event loop with no goroutine of its own: the request
// is held as a pendingUpgrade (the connection, the prepared 101, the
// actions of progress acks) in its engine's upgrades map, at most
// UpgradeMaxPending per listener, each with a deadline that the engine's
// handshake sweeper checks. Whichever comes first settles it, under the
// engine's hsMu:
//
//   - the batch's final ack: ACTION_REJECT answers its HTTP status and
//     body and closes the socket (counted in Stats.Refused as
//     upgrade_rejected); any other answer writes the 101, registers the
//     connection, applies the ack's actions and queues EVENT_CONNECT;
//   - the deadline (UpgradeTimeout), or a dead letter: HTTP 503 (counted
//     as upgrade_timeout);
//   - the client closing, or sending before the 101 (RFC 6455 §4.1 forbids
//     it): the socket is closed.
//
// A batch still out when its upgrade was settled otherwise is taken off
// the in-flight table; a late ack finds nothing and is answered as a
// duplicate.

// upgrade hold states of a wsTransport (wsTransport.hold).
const (
	holdNone    uint32 = iota // not held: the handshake or the connection runs as usual
	holdWaiting               // the request waits for the workers' answer
	holdEnded                 // refused, timed out or abandoned: discard the rest
)

// maxHeldActions bounds the actions of progress acks kept for a held
// upgrade (a handler that calls the API before it returns); more are
// dropped and counted in Stats.BadAcks.
const maxHeldActions = 1024

// maxRejectBody bounds the body of a rejection; a longer one is cut.
const maxRejectBody = 16 << 10

// pendingUpgrade is an upgrade request waiting for the workers.
type pendingUpgrade struct {
	e        *wsEngine
	t        *wsTransport
	c        *conn
	d        *delivery
	resp     []byte // the 101, written on accept
	deadline int64  // unix nanoseconds
	// actions are those of progress acks, applied on accept before the
	// final ack's. Guarded by the engine's hsMu.
	actions []bus.Action
}

// holdUpgrade sends the workers the upgrade request of t, whose handshake
// was read whole and is valid, instead of answering it: resp is the 101
// to write if they accept, req the request. Called on t's event loop.
func (e *wsEngine) holdUpgrade(t *wsTransport, resp []byte, rest []byte, req *bus.HTTPRequest, offer *deflateOffer) {
	s := e.l.s
	if len(rest) > 0 {
		// Frames before the 101: RFC 6455 §4.1 has the client wait.
		e.refuse(t, httpError(http.StatusBadRequest, "data before the upgrade response"), refusedBadHandshake)
		return
	}
	e.hsMu.Lock()
	if len(e.upgrades) >= e.l.cfg.UpgradeMaxPending {
		e.hsMu.Unlock()
		e.refuse(t, httpError(http.StatusServiceUnavailable, "too many upgrades waiting"), refusedUpgradeBusy)
		return
	}
	delete(e.pending, t) // the upgrade's deadline takes over from the handshake's
	remote, _ := netip.ParseAddrPort(t.nc.RemoteAddr().String())
	c := s.newConn(e.l, t, remote)
	if offer != nil && offer.serverBits != 0 {
		t.deflate = true
		c.deflate = offer.serverBits
	}
	d := &delivery{id: s.nextDelivery.Add(1), c: c, attempt: 1,
		events: []bus.Event{{Type: bus.EventWebSocketConnect, Request: req, BeforeUpgrade: true, TimeUnixMs: c.connectedMs}}}
	u := &pendingUpgrade{e: e, t: t, c: c, d: d, resp: bytes.Clone(resp),
		deadline: time.Now().Add(e.l.cfg.UpgradeTimeout).UnixNano()}
	d.upgrade = u
	e.upgrades[t] = u
	t.in = nil
	t.c = c
	t.hold.Store(holdWaiting)
	e.hsMu.Unlock()

	c.evmu.Lock()
	c.inflight = d
	c.evmu.Unlock()
	s.infMu.Lock()
	s.inflight[d.id] = d
	s.queueLocked(d)
	sends := s.pumpLocked(time.Now().UnixNano(), nil)
	s.infMu.Unlock()
	s.send(sends)
}

// takeUpgradeLocked removes t's pending upgrade and returns it, its
// socket marked as no longer waiting (holdEnded: the caller refuses it or
// accepts it); nil when it was settled already. Caller holds hsMu.
func (e *wsEngine) takeUpgradeLocked(t *wsTransport) *pendingUpgrade {
	u := e.upgrades[t]
	if u != nil {
		delete(e.upgrades, t)
		t.hold.Store(holdEnded)
	}
	return u
}

// earlyData handles bytes from a client whose upgrade waits: it must not
// send before the 101, so its upgrade is abandoned and the socket closed.
// Called on t's event loop.
func (e *wsEngine) earlyData(t *wsTransport) {
	e.hsMu.Lock()
	u := e.takeUpgradeLocked(t)
	e.hsMu.Unlock()
	if u == nil {
		return // settled meanwhile; a refusal closes the socket
	}
	e.l.s.abandon(u.d)
	e.l.s.stats.refused[refusedBadHandshake].Add(1)
	_ = t.write(httpError(http.StatusBadRequest, "data before the upgrade response"))
	_ = t.nc.Close()
}

// upgradeClosed abandons t's upgrade, if it waits, because its socket
// closed. It reports whether t's connection never joined the hub (the
// upgrade waited, or was refused); false: it was accepted.
func (e *wsEngine) upgradeClosed(t *wsTransport) bool {
	e.hsMu.Lock()
	u := e.takeUpgradeLocked(t)
	accepted := u == nil && t.hold.Load() == holdNone
	e.hsMu.Unlock()
	if u != nil {
		e.l.s.abandon(u.d)
	}
	return !accepted
}

// sweepUpgrades answers 503 to the upgrades whose deadline passed.
func (e *wsEngine) sweepUpgrades(now time.Time) {
	var late []*pendingUpgrade
	e.hsMu.Lock()
	for t, u := range e.upgrades {
		if now.UnixNano() >= u.deadline {
			late = append(late, e.takeUpgradeLocked(t))
		}
	}
	e.hsMu.Unlock()
	for _, u := range late {
		e.l.s.abandon(u.d)
		e.upgradeFailed(u)
	}
}

// upgradeFailed answers 503 to a settled upgrade the workers did not
// answer.
func (e *wsEngine) upgradeFailed(u *pendingUpgrade) {
	e.l.s.stats.refused[refusedUpgradeTimeout].Add(1)
	_ = u.t.write(httpError(http.StatusServiceUnavailable, "no answer from the workers"))
	_ = u.t.nc.Close()
}

// upgradeProgress keeps the actions of a progress ack of u's batch for the
// accept; they are dropped if the upgrade was settled.
func (s *Server) upgradeProgress(u *pendingUpgrade, actions []bus.Action) {
	e := u.e
	e.hsMu.Lock()
	if e.upgrades[u.t] == u {
		room := maxHeldActions - len(u.actions)
		if len(actions) > room {
			s.stats.badAcks.Add(uint64(len(actions) - room))
			s.log.Warn("actions before the upgrade dropped: too many", "client", u.c.id(s.id), "dropped", len(actions)-room)
			actions = actions[:room]
		}
		u.actions = append(u.actions, actions...)
	}
	e.hsMu.Unlock()
}

// upgradeAnswered settles u with the final ack's actions: a reject answers
// an HTTP error, anything else accepts. d is already off the in-flight
// table.
func (s *Server) upgradeAnswered(u *pendingUpgrade, actions []bus.Action) {
	e := u.e
	t, c := u.t, u.c
	e.hsMu.Lock()
	if e.takeUpgradeLocked(t) == nil {
		e.hsMu.Unlock()
		return // timed out or closed meanwhile
	}
	if i := slices.IndexFunc(actions, func(a bus.Action) bool { return a.Type == bus.ActionReject }); i >= 0 {
		e.hsMu.Unlock()
		status, body := int(actions[i].Code), actions[i].Arg
		if status < 400 || status > 599 {
			s.log.Warn("upgrade rejected with a status outside 400-599: answered 403", "client", c.id(s.id), "status", status)
			status = http.StatusForbidden
		}
		if len(body) > maxRejectBody {
			body = body[:maxRejectBody]
		}
		s.stats.refused[refusedUpgradeRejected].Add(1)
		_ = t.write(httpError(status, body))
		_ = t.nc.Close()
		return
	}
	// Accepted: under hsMu, so that a close of the socket now finds
	// either the upgrade waiting or the connection in the hub.
	all := append(u.actions, actions...)
	// EVENT_CONNECT is queued before the 101 lets the client send: this
	// is not c's event loop, which reads a message as soon as the 101 is
	// out. It waits behind u.d (c.inflight) until the actions are applied.
	s.pushEvent(c, bus.Event{Type: bus.EventConnect, TimeUnixMs: c.connectedMs})
	s.register(c, func() {
		t.hold.Store(holdNone)
		_ = t.write(u.resp)
	})
	e.hsMu.Unlock()
	s.applyActions(c, all, func() { s.acked(c, u.d) })
}

// abandon takes d, the batch of an upgrade settled without its final
// ack, off the in-flight table, the window and the parked batches.
func (s *Server) abandon(d *delivery) {
	s.infMu.Lock()
	if s.inflight[d.id] == d {
		delete(s.inflight, d.id)
		s.releaseLocked(d)
	}
	if d.parked {
		d.parked = false
		s.parked = slices.DeleteFunc(s.parked, func(p *delivery) bool { return p == d })
	}
	sends := s.pumpLocked(time.Now().UnixNano(), nil)
	s.infMu.Unlock()
	s.send(sends)
}

// httpError is an HTTP/1.1 error response with a plain-text body, after
// which the gateway closes the socket.
func httpError(status int, body string) []byte {
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	b := make([]byte, 0, 128+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nConnection: close\r\n\r\n"...)
	return append(b, body...)
}
