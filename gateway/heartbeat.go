package gateway

import (
	"fmt"
	"net"
	"time"

	"github.com/gatework/gatework/internal/phase"
)

// Heartbeat defaults (ListenerConfig.PingInterval and IdleTimeout).
const (
	DefaultPingInterval = 25 * time.Second
	DefaultIdleTimeout  = 60 * time.Second
)

// minHeartbeat is the shortest ping interval or idle timeout accepted; a
// shorter one is almost surely a number written without a unit.
const minHeartbeat = 10 * time.Millisecond

// Sweep period bounds: a shard looks at its connections every quarter of
// the shortest ping interval or idle timeout, within these bounds.
const (
	minSweep = 50 * time.Millisecond
	maxSweep = time.Second
)

// wsPing is the WebSocket ping frame the gateway sends: final, no payload.
var wsPing = []byte{0x80 | 0x9, 0}

func (l *ListenerConfig) applyHeartbeatDefaults() {
	if l.PingInterval == 0 && (l.Protocol == "ws" || l.PingData != "") {
		l.PingInterval = DefaultPingInterval
	}
	if l.IdleTimeout == 0 && (l.Protocol == "ws" || l.Protocol == "udp") {
		l.IdleTimeout = DefaultIdleTimeout
	}
}

func (l ListenerConfig) validateHeartbeat(key func(string) string) error {
	if l.PingData != "" && l.Protocol != "tcp" {
		return fmt.Errorf("gateway: %s: only for tcp listeners", key("ping_data"))
	}
	if l.PingData != "" && l.Framing.Validate() == nil {
		f := l.Framing
		if f.MaxMessage <= 0 {
			f.MaxMessage = max(l.MaxMessage, 0)
		}
		if _, err := f.WithDefaults().AppendFrame(nil, []byte(l.PingData)); err != nil {
			return fmt.Errorf("gateway: %s: cannot be framed: %w", key("ping_data"), err)
		}
	}
	if l.TCPKeepAlive > 0 && l.TCPKeepAlive < time.Second {
		return fmt.Errorf("gateway: %s: %v is shorter than 1s", key("tcp_keepalive"), l.TCPKeepAlive)
	}
	if l.TCPKeepAlive > 0 && l.Protocol == "udp" {
		return fmt.Errorf("gateway: %s: not for udp listeners", key("tcp_keepalive"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ping_interval", l.PingInterval}, {"idle_timeout", l.IdleTimeout}} {
		if d.v > 0 && d.v < minHeartbeat {
			return fmt.Errorf("gateway: %s: %v is shorter than %v (write a unit, such as 25s; negative turns it off)", key(d.name), d.v, minHeartbeat)
		}
	}
	return nil
}

// pingFrame returns the frame a quiet connection of this listener is sent,
// or nil when the listener sends no pings. Called once per listener.
func (l *listener) pingFrame() []byte {
	if l.cfg.PingInterval <= 0 {
		return nil
	}
	switch l.cfg.Protocol {
	case "ws":
		return wsPing
	case "tcp":
		if l.cfg.PingData == "" {
			return nil
		}
		f, err := l.cfg.Framing.AppendFrame(nil, []byte(l.cfg.PingData))
		if err != nil {
			return nil // not reached: Validate refuses such ping_data
		}
		return f
	}
	return nil
}

// sweepPeriod returns how often each shard sweeps its connections for
// pings and idle timeouts, or 0 when no listener has either.
func (s *Server) sweepPeriod() time.Duration {
	var shortest time.Duration
	for _, l := range s.listeners {
		for _, d := range []time.Duration{l.cfg.PingInterval, l.cfg.IdleTimeout} {
			if d > 0 && (shortest == 0 || d < shortest) {
				shortest = d
			}
		}
	}
	if shortest == 0 {
		return 0
	}
	return min(max(shortest/4, minSweep), maxSweep)
}

// sweepChunk is how many connections a sweep looks at per hold of the
// shard lock, so that a fan-out to the shard waits for at most one chunk
// and never for a whole pass (500,000 connections take tens of ms).
const sweepChunk = 4096

// sweepLoop runs the shard's heartbeat sweeps every sweep period, on a
// goroutine of its own so that a pass over many connections delays no
// flush, until the shard quits. Started only when sweepEvery > 0.
func (sh *shard) sweepLoop() {
	// At the same instant each period, so that the shards' sweeps share
	// one wake-up, but not the other gateway processes' instant: a sweep
	// writes a ping to every connection that fell quiet, and 50 processes
	// pinging together would be one burst on the machine's network stack.
	every, at := sh.s.sweepEvery, sh.s.sweepPhase
	t := time.NewTimer(phase.UntilOffset(every, at))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			sh.sweep(time.Now()) // not the tick's time, which may be stale
			t.Reset(phase.UntilOffset(every, at))
		case <-sh.quit:
			return
		}
	}
}

// sweep pings the connections that have been quiet for their listener's
// ping interval (within their queue bound: see controlFitsLocked) and
// closes, with reason idle_timeout, those quiet for their idle timeout.
// Protected connections are skipped. An idle connection costs no timer and
// no goroutine: the shard's due wheel (wheel.go) holds it by when it next
// needs a look, and a sweep looks at those whose time came, sweepChunk at a
// time under the shard lock, all against the same now. Only sweepLoop
// calls it.
func (sh *shard) sweep(now time.Time) {
	nowMs := now.UnixMilli()
	wake := false
	for more := true; more; {
		sh.mu.Lock()
		var pinged bool
		pinged, more = sh.sweepDueLocked(nowMs)
		wake = wake || pinged
		if !more && len(sh.held) > 0 {
			wake = true // fallback for a missed written-size wake-up
		}
		sh.mu.Unlock()
	}
	if wake {
		sh.signal()
	}
}

// sweepConnLocked applies the idle timeout and the ping to c as of nowMs,
// when c's time in the due wheel came: it reports whether it queued a ping,
// and when c next needs a look, if it stays in the wheel (a closing
// connection leaves it). c's time comes at the end of each whole ping
// interval of quiet, so a quiet connection is pinged once per interval.
// Caller holds sh.mu.
func (sh *shard) sweepConnLocked(c *conn, nowMs int64) (pinged bool, next int64, stay bool) {
	if c.state != stateOpen {
		return false, 0, false
	}
	if c.rx.Load() != 0 {
		// A held (paused, unconfirmed) client is not read: its silence
		// is ours. Looked at again next period.
		return false, nowMs + sh.wheel.every, true
	}
	if c.protected {
		// Exempt; unprotecting restarts its idle clock, so a look one
		// interval from now is soon enough.
		next, stay = c.nextDue(nowMs, 0)
		return false, next, stay
	}
	last := c.lastActiveMs.Load()
	quiet := nowMs - last
	if idle := c.l.cfg.IdleTimeout; idle > 0 && quiet >= idle.Milliseconds() {
		sh.closeLocked(c, ReasonIdleTimeout, false)
		return false, 0, false
	}
	if every := c.l.cfg.PingInterval.Milliseconds(); c.l.ping != nil && every > 0 && quiet >= every && sh.controlFitsLocked(c, len(c.l.ping)) {
		sh.appendFrameLocked(c, c.l.ping)
		pinged = true
	}
	if c.state != stateOpen { // the ping did not fit and the queue policy closed it
		return pinged, 0, false
	}
	next, stay = c.nextDue(last, quiet)
	return pinged, next, stay
}

// protectLocked turns c's exemption from pings and the idle timeout on or
// off. Turning it off restarts the idle clock: c counts as active now.
// Caller holds sh.mu.
func (c *conn) protectLocked(on bool) {
	if c.protected && !on {
		c.lastActiveMs.Store(nowMs())
	}
	c.protected = on
}

// keepAlive returns the TCP keep-alive of the listener's accepted sockets
// (see ListenerConfig.TCPKeepAlive) as net.ListenConfig wants it.
func (l ListenerConfig) keepAlive() (time.Duration, net.KeepAliveConfig) {
	switch d := l.TCPKeepAlive; {
	case d > 0:
		return d, net.KeepAliveConfig{Enable: true, Idle: d, Interval: max(d/3, time.Second), Count: 3}
	case d < 0 || l.IdleTimeout > 0:
		return -1, net.KeepAliveConfig{}
	}
	return 0, net.KeepAliveConfig{} // Go's default (15 s)
}
