package gateway

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// TestSweepChunks: a pass over more connections than one chunk pings each
// quiet connection exactly once and leaves the active ones alone, also
// when connections closed between two chunks were compacted out of the
// order (the pass resumes by sequence number, not by index).
func TestSweepChunks(t *testing.T) {
	for _, compact := range []bool{false, true} {
		sh := newShard(&Server{sweepEvery: time.Second})
		l := &listener{cfg: ListenerConfig{PingInterval: 10 * time.Second, MaxQueueBytes: 4 << 20}, ping: wsPing}
		now := time.Now()
		nowMs, prevMs := now.UnixMilli(), now.Add(-time.Second).UnixMilli()
		conns := make([]*conn, 2*sweepChunk+5)
		for i := range conns {
			c := &conn{seq: uint64(i + 1), sh: sh, l: l}
			last := now.Add(-10500 * time.Millisecond) // an interval of quiet ended since the last sweep
			if i%3 == 0 {
				last = now.Add(-time.Second) // active
			}
			c.lastActiveMs.Store(last.UnixMilli())
			sh.add(c)
			conns[i] = c
		}
		var next uint64
		chunks := 0
		for more := true; more; chunks++ {
			sh.mu.Lock()
			next, more, _ = sh.sweepFromLocked(next, nowMs, prevMs)
			if compact && chunks == 0 {
				// 100 connections on each side of the cursor close.
				gone := func(c *conn) bool { return c.seq > next-100 && c.seq < next+100 }
				sh.order = slices.DeleteFunc(sh.order, gone)
			}
			sh.mu.Unlock()
		}
		if want := map[bool]int{false: 3, true: 2}[compact]; chunks != want {
			t.Errorf("compact %v: %d chunks, want %d", compact, chunks, want)
		}
		for _, c := range conns {
			want := []byte(nil)
			if (c.seq-1)%3 != 0 && (!compact || c.seq <= sweepChunk || c.seq > sweepChunk+100) {
				want = wsPing
			}
			if !bytes.Equal(c.out, want) {
				t.Fatalf("compact %v: conn %d queued %x, want %x", compact, c.seq, c.out, want)
			}
		}
	}
}

// BenchmarkSweepChunk measures one chunk of a heartbeat sweep: the
// longest a fan-out to the shard waits for the sweep (ns/op is per chunk
// of sweepChunk connections). "ping": every connection's ping interval
// ended since the last sweep (once per interval); "none": nothing to do
// (the other sweeps).
func BenchmarkSweepChunk(b *testing.B) {
	for _, ping := range []bool{true, false} {
		b.Run(map[bool]string{true: "ping", false: "none"}[ping], func(b *testing.B) {
			sh := newShard(&Server{sweepEvery: time.Second})
			l := &listener{cfg: ListenerConfig{PingInterval: 10 * time.Second, MaxQueueBytes: 4 << 20}, ping: wsPing}
			now := time.Now()
			for i := range 64 * sweepChunk {
				c := &conn{seq: uint64(i + 1), sh: sh, l: l}
				c.lastActiveMs.Store(now.UnixMilli())
				sh.add(c)
			}
			i := 0
			var next uint64
			for b.Loop() {
				// With ping, each pass comes 1 s after one more whole
				// interval of quiet; without, 1 s into the first.
				nowMs := now.UnixMilli() + 1000
				if ping {
					nowMs += int64(i+1) * 10_000
				}
				sh.mu.Lock()
				var more, pinged bool
				next, more, pinged = sh.sweepFromLocked(next, nowMs, nowMs-2000)
				if pinged != ping {
					b.Fatalf("pinged %v, want %v", pinged, ping)
				}
				if !more {
					next = 0
					i++
					for _, c := range sh.order {
						sh.putBufLocked(c.out)
						c.out, c.dirty = nil, false
					}
					sh.dirty = sh.dirty[:0]
				}
				sh.mu.Unlock()
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
			sh.sweptMs = at.Add(-time.Second).UnixMilli()
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
