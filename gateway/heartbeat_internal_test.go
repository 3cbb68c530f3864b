package gateway

import (
	"bytes"
	"testing"
	"time"
)

// wheelShard returns a shard of a server with one ws listener of the given
// ping interval and idle timeout (0: none), swept every second.
func wheelShard(ping, idle time.Duration) (*shard, *listener) {
	s := &Server{sweepEvery: time.Second, cfg: Config{CloseTimeout: time.Second}}
	l := &listener{s: s, cfg: ListenerConfig{Protocol: "ws", PingInterval: ping, IdleTimeout: idle, MaxQueueBytes: 4 << 20}, ping: wsPing}
	s.listeners = []*listener{l}
	return newShard(s), l
}

// TestDueWheel drives a shard's sweeps for 60 simulated seconds over more
// connections than one chunk (10 s pings, 25 s idle timeout, a sweep 1 ms
// after each second, pongs 5 ms after a ping): a client that answers each
// ping is pinged once per interval (its pong comes after the sweep that
// pinged it, so the next ping waits for the next sweep after 10 s of quiet:
// at 10, 21, 32, 43 and 54 s), one that keeps sending is never pinged, a
// silent one is pinged at 10 and 20 s and closed at 25 s, and one that
// closes leaves the wheel. The wheel looks at a client about twice per
// ping round, not once per sweep, and holds exactly the open connections
// at the end. With the sweeps stalled from 31 to 59 s (longer than the
// wheel's 27 ticks), the sweep at 60 s goes round the wheel once: the
// answering clients, quiet since 21 s, are closed then.
func TestDueWheel(t *testing.T) {
	const (
		answers = iota // pongs 5 ms after each ping
		active         // sends every second
		silent         // never answers
		closes         // closes at 5 s
	)
	type want struct {
		pings  int
		closed bool
		reason CloseReason
	}
	for _, tc := range []struct {
		stall bool
		want  [4]want
	}{
		{false, [4]want{answers: {pings: 5}, active: {}, silent: {2, true, ReasonIdleTimeout}, closes: {0, true, ReasonClientClosed}}},
		{true, [4]want{answers: {2, true, ReasonIdleTimeout}, active: {}, silent: {2, true, ReasonIdleTimeout}, closes: {0, true, ReasonClientClosed}}},
	} {
		sh, l := wheelShard(10*time.Second, 25*time.Second)
		t0 := time.Now().Truncate(time.Second)
		conns := make([]*conn, 2*sweepChunk+5)
		pings := make([]int, len(conns))
		for i := range conns {
			c := &conn{seq: uint64(i + 1), sh: sh, l: l}
			c.lastActiveMs.Store(t0.UnixMilli())
			sh.add(c)
			conns[i] = c
		}
		const end = 60
		for sec := 1; sec <= end; sec++ {
			if tc.stall && sec > 30 && sec < end {
				continue
			}
			now := t0.Add(time.Duration(sec)*time.Second + time.Millisecond)
			for i, c := range conns {
				if i%4 == active {
					c.lastActiveMs.Store(now.Add(-time.Millisecond).UnixMilli())
				}
				if i%4 == closes && sec == 5 {
					sh.remove(c, ReasonClientClosed)
				}
			}
			sh.sweep(now)
			sh.mu.Lock()
			for i, c := range conns {
				if bytes.HasPrefix(c.out, wsPing) {
					pings[i]++
					if i%4 == answers {
						c.lastActiveMs.Store(now.Add(5 * time.Millisecond).UnixMilli())
					}
				}
				if c.state == stateOpen {
					sh.putBufLocked(c.out)
					c.out, c.dirty = nil, false
				}
			}
			sh.dirty = sh.dirty[:0]
			sh.mu.Unlock()
		}
		open := 0
		for i, c := range conns {
			w := tc.want[i%4]
			if pings[i] != w.pings {
				t.Fatalf("stall %v: client %d (kind %d): %d pings, want %d", tc.stall, i, i%4, pings[i], w.pings)
			}
			if (c.state != stateOpen) != w.closed || (w.closed && c.reason != w.reason) {
				t.Fatalf("stall %v: client %d (kind %d): state %d, reason %v; want closed %v, reason %v", tc.stall, i, i%4, c.state, c.reason, w.closed, w.reason)
			}
			if c.state == stateOpen {
				open++
				if c.dueTick == 0 {
					t.Fatalf("stall %v: open client %d is not in the wheel", tc.stall, i)
				}
			}
		}
		if got := sh.wheel.entries - sh.wheel.dead; got != open {
			t.Errorf("stall %v: the wheel holds %d live entries (%d, %d dead), want the %d open clients", tc.stall, got, sh.wheel.entries, sh.wheel.dead, open)
		}
		// 60 sweeps of about 8,200 connections: a sweep that looks at every
		// connection each period looks 490,000 times; the wheel about 6
		// times per client (an active one once per 10 s).
		if most := uint64(len(conns)) * 8; sh.wheel.looks > most {
			t.Errorf("stall %v: %d looks, want at most %d", tc.stall, sh.wheel.looks, most)
		}
	}
}

// TestDueWheelCompacts: closed connections leave the wheel's buckets in a
// compaction once they are half of them, before their tick comes.
func TestDueWheelCompacts(t *testing.T) {
	sh, l := wheelShard(25*time.Second, 0)
	var conns []*conn
	for i := range 1000 {
		c := &conn{seq: uint64(i + 1), sh: sh, l: l}
		c.lastActiveMs.Store(time.Now().UnixMilli())
		sh.add(c)
		conns = append(conns, c)
	}
	for _, c := range conns[:600] {
		sh.remove(c, ReasonClientClosed)
	}
	if w := &sh.wheel; w.entries != 400+w.dead || w.dead > w.entries/2+1 {
		t.Fatalf("after 600 of 1000 closed: %d entries, %d dead; want 400 live and a compaction", w.entries, w.dead)
	}
	inWheel := 0
	for _, c := range conns[:600] {
		if c.dueTick != 0 {
			inWheel++
		}
	}
	if inWheel != sh.wheel.dead || inWheel == 600 {
		t.Fatalf("%d closed clients still in the wheel, %d counted dead; want them equal and fewer than 600", inWheel, sh.wheel.dead)
	}
}

// TestDueWheelLongWait: a connection due further out than the wheel spans
// (a 1 h idle timeout beside a 100 ms ping interval: 50 ms sweeps, a wheel
// of maxWheel ticks) is looked at early, does nothing then, and is closed
// when its idle timeout ends, not before.
func TestDueWheelLongWait(t *testing.T) {
	s := &Server{cfg: Config{CloseTimeout: time.Second}}
	fast := &listener{s: s, cfg: ListenerConfig{Protocol: "ws", PingInterval: 100 * time.Millisecond}, ping: wsPing}
	slow := &listener{s: s, cfg: ListenerConfig{Protocol: "ws", PingInterval: -1, IdleTimeout: time.Hour}}
	s.listeners = []*listener{fast, slow}
	s.sweepEvery = s.sweepPeriod()
	if s.sweepEvery != minSweep {
		t.Fatalf("sweep period %v, want %v", s.sweepEvery, minSweep)
	}
	sh := newShard(s)
	t0 := time.Now()
	c := &conn{seq: 1, sh: sh, l: slow}
	c.lastActiveMs.Store(t0.UnixMilli())
	sh.add(c)
	if n := len(sh.wheel.buckets); n != maxWheel {
		t.Fatalf("%d buckets, want %d", n, maxWheel)
	}
	for at := t0.Add(time.Minute); at.Before(t0.Add(time.Hour)); at = at.Add(time.Minute) {
		sh.sweep(at)
		if c.state != stateOpen {
			t.Fatalf("closed after %v of quiet, before its idle timeout", at.Sub(t0))
		}
	}
	sh.sweep(t0.Add(time.Hour + time.Second))
	if c.state != stateClosing || c.reason != ReasonIdleTimeout {
		t.Fatalf("after 1 h of quiet: state %d, reason %v; want closing, idle_timeout", c.state, c.reason)
	}
}

// BenchmarkSweep measures a heartbeat sweep of a shard of 64 × sweepChunk
// idle connections (10 s pings, 1 s sweeps): "due", the sweep at the end
// of an interval, which pings all of them (ns/op divided by 262,144: the
// cost per ping); "quiet", one of the nine sweeps in between, which finds
// nothing due and looks at nothing.
func BenchmarkSweep(b *testing.B) {
	for _, due := range []bool{true, false} {
		b.Run(map[bool]string{true: "due", false: "quiet"}[due], func(b *testing.B) {
			sh, l := wheelShard(10*time.Second, 0)
			t0 := time.Now().Truncate(time.Second)
			var conns []*conn
			for i := range 64 * sweepChunk {
				c := &conn{seq: uint64(i + 1), sh: sh, l: l}
				c.lastActiveMs.Store(t0.UnixMilli())
				sh.add(c)
				conns = append(conns, c)
			}
			round := 0
			for b.Loop() {
				round++
				at := t0.Add(time.Duration(round)*10*time.Second + 500*time.Millisecond)
				if !due {
					at = t0.Add(5500 * time.Millisecond)
				}
				sh.sweep(at)
				b.StopTimer()
				sh.mu.Lock()
				if pinged := conns[0].out != nil; pinged != due {
					b.Fatalf("pinged %v, want %v", pinged, due)
				}
				for _, c := range conns {
					sh.putBufLocked(c.out)
					c.out, c.dirty = nil, false
				}
				sh.dirty = sh.dirty[:0]
				sh.mu.Unlock()
				for len(sh.wake) > 0 {
					<-sh.wake
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkHeartbeatRound measures the gateway's own work for one
// heartbeat round of an idle WebSocket connection: the sweep that finds it
// quiet and queues the pre-encoded ping, the flusher's one write (to a
// counting transport: the syscall is not measured here, gwload idle
// measures the whole), and the parse of the client's masked pong, which
// only moves the connection's activity clock. ns/round and allocs/op
// divided by the connections give the per-connection figures (0 allocs:
// nothing is allocated per ping or pong).
func BenchmarkHeartbeatRound(b *testing.B) {
	const n = 10_000
	lc := ListenerConfig{Protocol: "ws", Addr: "127.0.0.1:0", PingInterval: 25 * time.Second}
	s, ts := benchServerWith(b, n, lc, 0)
	l := &listener{s: s, cfg: s.cfg.Listeners[0].WithDefaults()}
	l.ping = l.pingFrame()
	s.sweepEvery = time.Second
	e := &wsEngine{nbioEngine: nbioEngine{l: l}}
	type peer struct {
		c *conn
		t *wsTransport
	}
	var peers []peer
	for _, sh := range s.shards {
		for _, c := range sh.order {
			c.l = l
			wt := &wsTransport{}
			wt.c = c
			peers = append(peers, peer{c: c, t: wt})
		}
	}
	pong := []byte{0x80 | 0xA, 0x80, 1, 2, 3, 4} // masked, empty
	frame := make([]byte, len(pong))
	now := time.Now()
	var want int64
	round := 0
	for b.Loop() {
		round++
		at := now.Add(time.Duration(round) * 25500 * time.Millisecond)
		for _, sh := range s.shards {
			sh.sweep(at)
		}
		want += n * int64(len(wsPing))
		for deadline := time.Now().Add(10 * time.Second); ; {
			var got int64
			for _, t := range ts {
				got += t.bytes.Load()
			}
			if got >= want {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("round %d: %d bytes of pings written, want %d", round, got, want)
			}
		}
		for _, p := range peers {
			copy(frame, pong) // frames unmasks in place
			e.frames(p.t, frame)
			// The pong set the clock to the real now; the rounds run on
			// the simulated one.
			p.c.lastActiveMs.Store(at.UnixMilli())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/round")
}
