package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
	"golang.org/x/time/rate"
)

// refusal says why a new socket was refused; see Stats.Refused.
type refusal uint8

const (
	refusedNone             refusal = iota
	refusedRate                     // over max_new_conns_per_sec
	refusedTotal                    // max_conns sockets already open
	refusedPerIP                    // max_conns_per_ip sockets of its IP already open
	refusedIPTable                  // the table of remote IPs is full of IPs with open sockets
	refusedOrigin                   // a WebSocket Origin not in the listener's origins
	refusedBadHandshake             // a WebSocket upgrade request refused (400, 404, 426, 431…)
	refusedHandshakeTimeout         // a WebSocket upgrade or TLS handshake not complete within HandshakeTimeout
	refusedTLSHandshake             // a TLS handshake that failed (not TLS, no common version or suite, bad client certificate…)
	refusedPeers                    // a UDP listener's peer table (max_peers) is full
	refusedDatagram                 // a datagram from a new UDP peer that is not a valid message (too large, bad framing)
	refusedUpgradeRejected          // a worker rejected the upgrade before the 101 (upgrade_hook)
	refusedUpgradeTimeout           // no worker answered the upgrade within upgrade_timeout (503)
	refusedUpgradeBusy              // upgrade_max_pending upgrades already waited for the workers (503)
	refusalCount
)

var refusalNames = [refusalCount]string{"", "rate", "total", "per_ip", "ip_table", "origin", "bad_handshake", "handshake_timeout", "tls_handshake", "peers", "bad_datagram",
	"upgrade_rejected", "upgrade_timeout", "upgrade_busy"}

// DefaultMaxIPs is Config.MaxIPs's default.
const DefaultMaxIPs = 65536

// Refused WebSocket sockets get an HTTP answer, then FIN, and are closed
// refuseLinger later at the latest (the client normally closes first), so
// that the answer is read rather than reset. At most maxRefusedLinger wait
// like this; beyond, a refused socket is closed at once.
const (
	refuseLinger     = time.Second
	maxRefusedLinger = 1024
)

// limits holds the gateway-wide connection limits and the IP table. It
// is nil-free: a gateway without limits has active false and no table.
type limits struct {
	active    bool          // any limit configured: sockets get a quota
	maxConns  int64         // 0: none
	maxPerIP  int           // 0: none
	accept    *rate.Limiter // nil: no accept rate limit
	ipPolicy  policy
	open      atomic.Int64 // admitted sockets not yet closed
	lingering atomic.Int64 // refused sockets waiting for their peer to close
	ips       *ipTable     // nil: no per-IP limit
}

func newLimits(cfg *Config) *limits {
	lim := &limits{maxConns: int64(cfg.MaxConns), maxPerIP: cfg.MaxConnsPerIP}
	lim.ipPolicy, _ = parsePolicy(cfg.IPRateLimit.Policy)
	if cfg.MaxNewConnsPerSec > 0 {
		lim.accept = rate.NewLimiter(rate.Limit(cfg.MaxNewConnsPerSec), cfg.MaxNewConnsPerSec)
	}
	if cfg.MaxConnsPerIP > 0 || cfg.IPRateLimit.enabled() {
		lim.ips = &ipTable{slots: make(map[netip.Addr]*ipSlot), max: cfg.MaxIPs, rate: cfg.IPRateLimit}
		if cfg.IPRateLimit.enabled() {
			lim.ips.keepIdle = cfg.IPRateLimit.refill()
		}
	}
	lim.active = lim.maxConns > 0 || lim.accept != nil || lim.ips != nil
	for _, l := range cfg.Listeners {
		lim.active = lim.active || l.RateLimit.enabled()
	}
	return lim
}

// quota is what a socket admitted under limits holds: its IP's slot and
// its own message budget. It is allocated only when a limit is configured,
// and the budget only at the first message, so that an idle connection
// costs one small allocation at most.
type quota struct {
	ip   *ipSlot       // nil without a per-IP limit
	msgs *rate.Limiter // the connection's budget; made at its first message
}

// refusedQuota marks the quota of a refused WebSocket socket that waits
// for its peer to close (see refuseOpen).
var refusedQuota quota

// quotaOf returns c's quota, nil when no limit applies.
func quotaOf(c *conn) *quota {
	switch t := c.t.(type) {
	case *wsTransport:
		return t.q
	case *tcpTransport:
		return t.q
	case *udpTransport:
		return t.q
	}
	return nil
}

// admitSocket applies the accept rate, max_conns and the per-IP limits to
// a new socket. It returns the socket's quota (nil when no limit is
// configured) or why it is refused, counted in Stats.Refused. An admitted
// socket with a quota must be released once, when it closes.
func (s *Server) admitSocket(nc *nbio.Conn) (*quota, refusal) {
	var addr netip.Addr
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr().Unmap()
	}
	return s.admitAddr(addr)
}

// admitAddr is admitSocket for a peer at addr (a TCP socket, or a UDP
// peer's first datagram).
func (s *Server) admitAddr(addr netip.Addr) (*quota, refusal) {
	lim := s.lim
	if !lim.active {
		return nil, refusedNone
	}
	refuse := func(r refusal) (*quota, refusal) {
		s.stats.refused[r].Add(1)
		return nil, r
	}
	if lim.accept != nil && !lim.accept.Allow() {
		return refuse(refusedRate)
	}
	if n := lim.open.Add(1); lim.maxConns > 0 && n > lim.maxConns {
		lim.open.Add(-1)
		return refuse(refusedTotal)
	}
	q := &quota{}
	if lim.ips != nil {
		slot, r := lim.ips.acquire(addr, lim.maxPerIP, time.Now())
		if r != refusedNone {
			lim.open.Add(-1)
			return refuse(r)
		}
		q.ip = slot
	}
	return q, refusedNone
}

// releaseSocket returns what the closed socket sk held to the limits.
func (s *Server) releaseSocket(sk *sock) {
	if sk != nil {
		s.releaseQuota(sk.q)
	}
}

// releaseQuota returns q, what a closed socket or UDP peer held, to the
// limits; nil (no limits) is a no-op.
func (s *Server) releaseQuota(q *quota) {
	switch {
	case q == nil:
	case q == &refusedQuota:
		s.lim.lingering.Add(-1)
	default:
		s.lim.open.Add(-1)
		if q.ip != nil {
			s.lim.ips.release(q.ip, time.Now())
		}
	}
}

// refuseOpen answers a WebSocket socket refused by the limits before its
// upgrade request is read: 503 (or 429 for its IP's limit) with
// Retry-After, then FIN; the socket is closed when the client closes or
// refuseLinger later. Over the accept rate, or with maxRefusedLinger
// sockets already waiting, it is closed at once instead: a flood must not
// hold sockets.
func (e *wsEngine) refuseOpen(nc *nbio.Conn, r refusal) {
	lim := e.l.s.lim
	if r == refusedRate || lim.lingering.Add(1) > maxRefusedLinger {
		if r != refusedRate {
			lim.lingering.Add(-1)
		}
		_ = nc.Close()
		return
	}
	status := "503 Service Unavailable"
	if r == refusedPerIP {
		status = "429 Too Many Requests"
	}
	t := &wsTransport{sock: newSock(nc, &refusedQuota), dead: true}
	e.hsMu.Lock()
	e.pending[t] = time.Now().Add(refuseLinger).UnixNano()
	e.hsMu.Unlock()
	setTransport(nc, t)
	_ = t.write([]byte("HTTP/1.1 " + status + "\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
	t.closeWrite()
}

// countTimeouts counts the handshakes of late that timed out, leaving out
// the refused sockets that only waited for their peer to close.
func (e *wsEngine) countTimeouts(late []*wsTransport) {
	n := 0
	for _, t := range late {
		if t.q != &refusedQuota {
			n++
		}
	}
	e.l.s.stats.refused[refusedHandshakeTimeout].Add(uint64(n))
}

// ipTable counts the open sockets and holds the message budget of each
// remote IP, shared by every listener and shard of the gateway.
//
// Bound: at most max slots. A slot with open sockets stays; a slot without
// (idle) stays keepIdle longer, so that reconnecting does not refill an
// IP's budget, and is then dropped by a sweep (every sweepEvery, during an
// acquire). A new IP that finds the table full first evicts every idle
// slot, however young; if none is idle it is refused (ip_table).
type ipTable struct {
	mu        sync.Mutex
	slots     map[netip.Addr]*ipSlot
	max       int
	rate      RateLimit
	keepIdle  time.Duration
	idle      int // slots with no open socket
	lastSweep time.Time
}

// ipSlot is one remote IP in the table.
type ipSlot struct {
	addr      netip.Addr
	conns     int           // open sockets; guarded by ipTable.mu
	idleSince time.Time     // when conns fell to 0; guarded by ipTable.mu
	msgs      *rate.Limiter // the IP's budget, nil without one; safe for concurrent use
}

// sweepEvery is how often acquire drops the idle slots past keepIdle.
const sweepEvery = 10 * time.Second

// acquire counts a new socket of addr, up to maxPerIP (0: no bound).
func (t *ipTable) acquire(addr netip.Addr, maxPerIP int, now time.Time) (*ipSlot, refusal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) >= sweepEvery {
		t.sweepLocked(now, false)
	}
	slot := t.slots[addr]
	if slot == nil {
		if len(t.slots) >= t.max {
			if t.idle == 0 {
				return nil, refusedIPTable
			}
			t.sweepLocked(now, true)
		}
		slot = &ipSlot{addr: addr}
		if t.rate.enabled() {
			slot.msgs = t.rate.newLimiter()
		}
		t.slots[addr] = slot
	} else if slot.conns == 0 {
		t.idle--
	}
	if maxPerIP > 0 && slot.conns >= maxPerIP {
		return nil, refusedPerIP // conns > 0: the slot was not idle
	}
	slot.conns++
	return slot, refusedNone
}

// release uncounts a socket of slot.
func (t *ipTable) release(slot *ipSlot, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	slot.conns--
	if slot.conns > 0 {
		return
	}
	if t.keepIdle <= 0 {
		delete(t.slots, slot.addr)
		return
	}
	slot.idleSince = now
	t.idle++
}

// sweepLocked drops idle slots: those idle for keepIdle, or all of them.
func (t *ipTable) sweepLocked(now time.Time, all bool) {
	t.lastSweep = now
	if t.idle == 0 {
		return
	}
	for addr, slot := range t.slots {
		if slot.conns == 0 && (all || now.Sub(slot.idleSince) >= t.keepIdle) {
			delete(t.slots, addr)
			t.idle--
		}
	}
}

// size returns the number of slots.
func (t *ipTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.slots)
}

// validateLimits checks the gateway-wide limits of c.
func (c Config) validateLimits() error {
	switch {
	case c.MaxConns < 0:
		return errors.New("gateway: max_conns: negative")
	case c.MaxConnsPerIP < 0:
		return errors.New("gateway: max_conns_per_ip: negative")
	case c.MaxNewConnsPerSec < 0:
		return errors.New("gateway: max_new_conns_per_sec: negative")
	case c.MaxIPs < 0:
		return errors.New("gateway: max_ips: negative")
	}
	return c.IPRateLimit.validate("ip_rate_limit")
}

// validateLimits checks the listener's rate limit and origins.
func (l ListenerConfig) validateLimits(key func(string) string) error {
	if err := l.RateLimit.validate(key("rate_limit")); err != nil {
		return err
	}
	if len(l.Origins) > 0 && l.Protocol != "ws" {
		return fmt.Errorf("gateway: %s: only for ws listeners", key("origins"))
	}
	for i, o := range l.Origins {
		if err := checkOriginPattern(o); err != nil {
			return fmt.Errorf("gateway: %s[%d]: %w", key("origins"), i, err)
		}
	}
	return nil
}

// limitStats fills the limit counters of st.
func (s *Server) limitStats(st *Stats) {
	st.Throttled = make(map[string]uint64, policyCount)
	for p := range policyCount {
		st.Throttled[p.String()] = s.stats.throttled[p].Load()
	}
	st.Refused = make(map[string]uint64, refusalCount-1)
	for r := refusedNone + 1; r < refusalCount; r++ {
		st.Refused[refusalNames[r]] = s.stats.refused[r].Load()
	}
}
