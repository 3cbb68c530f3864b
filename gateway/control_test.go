package gateway

import (
	"bytes"
	"log/slog"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestPingFlood: a client that pings without ever reading is answered
// within max_queue_bytes: the pongs the socket cannot take count against
// the bound, so the client is closed as a slow consumer (disconnect) or
// loses pongs and keeps its connection (drop_oldest, drop_newest), and the
// gateway never holds more than the bound for it. (Pongs were queued
// outside the bound: the queue grew with every ping.)
func TestPingFlood(t *testing.T) {
	const (
		bound = 64 << 10
		pings = 4000 // 125-byte pongs: 508,000 bytes, 7.75 times the bound
	)
	payload := bytes.Repeat([]byte{'p'}, 125)
	for _, policy := range []string{QueueDisconnect, QueueDropOldest, QueueDropNewest} {
		t.Run(policy, func(t *testing.T) {
			l := wsListener(-1, -1) // no pings of the gateway's own
			l.MaxQueueBytes, l.QueuePolicy = bound, policy
			s, r, _ := startWithWorker(t, Config{Listeners: []ListenerConfig{l}, CloseTimeout: 500 * time.Millisecond})
			flood := dialSlowWS(t, s, "flood")
			id := r.id(t, "flood")
			sc, err := s.lookup(id)
			if err != nil {
				t.Fatal(err)
			}
			// A small send buffer on the gateway's side too, so that the
			// kernel takes little and the pongs pile up in the gateway.
			rc, err := sc.t.(*wsTransport).nc.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			_ = rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
			})
			queued := func() int64 {
				sc.sh.mu.Lock()
				defer sc.sh.mu.Unlock()
				if sc.state != stateOpen {
					return 0
				}
				return sc.queuedLocked()
			}
			var maxQueued int64
			sent := 0
			for ; sent < pings && !sc.closing(); sent++ {
				if err := flood.WriteControl(websocket.PingMessage, payload, time.Now().Add(5*time.Second)); err != nil {
					break // closed by the gateway
				}
				if sent%16 == 0 {
					maxQueued = max(maxQueued, queued())
				}
			}
			// The gateway has read every ping once it answers a message
			// sent after them.
			if !sc.closing() {
				if err := flood.WriteMessage(websocket.TextMessage, []byte("hello:after")); err != nil {
					t.Fatal(err)
				}
				r.id(t, "after")
			}
			maxQueued = max(maxQueued, queued())
			if maxQueued > bound {
				t.Fatalf("the flooding client's queue reached %d bytes, bound %d (%d pings sent)", maxQueued, bound, sent)
			}
			st := s.Stats()
			if policy == QueueDisconnect {
				waitFor(t, 10*time.Second, "the flooding client's close", func() bool { return r.closeReason(id) != "" })
				st = s.Stats()
				if reason := r.closeReason(id); reason != "slow_consumer" || st.Closes["slow_consumer"] != 1 || st.Dropped[QueueDisconnect] != 1 {
					t.Fatalf("after %d pings: close reason %q, closes %v, dropped %v", sent, reason, st.Closes, st.Dropped)
				}
				return
			}
			if sc.closing() || sent != pings {
				t.Fatalf("the flooding client was closed under %s after %d pings", policy, sent)
			}
			if st.Dropped[policy] == 0 || st.Closes["slow_consumer"] != 0 {
				t.Fatalf("dropped %v, closes %v: want pongs dropped, no close", st.Dropped, st.Closes)
			}
		})
	}
}

// TestHeartbeatPingBound: the heartbeat's ping (WebSocket, or a TCP
// listener's ping_data) counts against max_queue_bytes like a pong: a
// connection whose socket holds the whole bound is closed as a slow
// consumer (disconnect) or not pinged (drop_oldest, drop_newest) instead
// of growing its queue by a ping every interval.
func TestHeartbeatPingBound(t *testing.T) {
	const bound = 100
	for _, tc := range []struct {
		protocol, policy string
		unsent           int64 // bytes the socket engine holds
		pinged           bool
		reason           CloseReason // 0: stays open
	}{
		{"ws", QueueDisconnect, 0, true, 0},
		{"ws", QueueDisconnect, bound - 2, true, 0},
		{"ws", QueueDisconnect, bound - 1, false, ReasonSlowConsumer},
		{"ws", QueueDropNewest, bound, false, 0},
		{"ws", QueueDropOldest, bound, false, 0},
		{"tcp", QueueDisconnect, bound, false, ReasonSlowConsumer},
		{"tcp", QueueDropNewest, bound, false, 0},
		{"tcp", QueueDropOldest, 0, true, 0},
	} {
		cfg := Config{Logger: slog.New(slog.DiscardHandler), Shards: 1, Listeners: []ListenerConfig{{
			Protocol: tc.protocol, Addr: "127.0.0.1:0", MaxQueueBytes: bound, QueuePolicy: tc.policy,
			PingInterval: 10 * time.Second, IdleTimeout: -1}}}
		if tc.protocol == "tcp" {
			cfg.Listeners[0].PingData = "ping"
		}
		cfg.applyDefaults()
		s := &Server{cfg: cfg, id: "0123456789", log: cfg.Logger, inflight: map[uint64]*delivery{}, quit: make(chan struct{})}
		s.shards = append(s.shards, newShard(s))
		l := &listener{s: s, cfg: cfg.Listeners[0]}
		l.ping = l.pingFrame()
		c := s.newConn(l, &countingTransport{}, netip.MustParseAddrPort("127.0.0.1:1234"))
		now := time.Now()
		c.lastActiveMs.Store(now.Add(-10500 * time.Millisecond).UnixMilli())
		c.unsent.Store(tc.unsent)
		sh := c.sh
		sh.add(c)
		sh.mu.Lock()
		pinged, _, _ := sh.sweepConnLocked(c, now.UnixMilli())
		out, state, reason := string(c.out), c.state, c.reason
		sh.mu.Unlock()
		name := tc.protocol + "/" + tc.policy
		if want := map[bool]string{true: string(l.ping)}[tc.pinged]; pinged != tc.pinged || (tc.reason == 0 && out != want) {
			t.Errorf("%s, %d unsent: pinged %v, queued %q; want %v, %q", name, tc.unsent, pinged, out, tc.pinged, want)
		}
		if (tc.reason == 0) != (state == stateOpen) || reason != tc.reason {
			t.Errorf("%s, %d unsent: state %d, reason %v; want reason %v", name, tc.unsent, state, reason, tc.reason)
		}
		dropped := s.stats.dropped[dropDisconnect].Load() + s.stats.dropped[dropOldest].Load() + s.stats.dropped[dropNewest].Load()
		if want := map[bool]uint64{true: 0, false: 1}[tc.pinged]; dropped != want {
			t.Errorf("%s, %d unsent: %d dropped, want %d", name, tc.unsent, dropped, want)
		}
	}
}
