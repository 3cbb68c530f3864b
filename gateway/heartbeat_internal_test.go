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
