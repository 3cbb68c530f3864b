package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/testwait"
)

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// echoWorker answers every event batch on nc, echoing messages to their
// sender, so that the gateway's events are acknowledged and clients can
// check that they are still served.
func echoWorker(t testing.TB, nc *nats.Conn) {
	t.Helper()
	subj, _ := bus.NewSubjects("")
	sub, err := nc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var b bus.EventBatch
		if err := bus.DecodeEventBatch(m.Data, &b); err != nil {
			t.Error(err)
			return
		}
		ack := bus.Ack{Delivery: b.Delivery}
		for _, ev := range b.Events {
			if ev.Type == bus.EventMessage {
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: ev.Data, Flag: ev.Binary})
			}
		}
		_ = m.Respond(bus.AppendAck(nil, &ack))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// startLimited starts a gateway with an echo worker and stops it when the
// test ends.
func startLimited(t *testing.T, cfg Config) *Server {
	t.Helper()
	nc := testBus(t)
	echoWorker(t, nc)
	s := startServer(t, nc, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// dialerFrom returns a dialer whose connections come from source address
// ip (any 127.0.0.0/8 address works on Linux loopback).
func dialerFrom(ip string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
}

// dialWS upgrades a WebSocket client from source ip; hdr may be nil.
func dialWS(s *Server, ip string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{NetDialContext: dialerFrom(ip).DialContext, HandshakeTimeout: 5 * time.Second}
	return d.Dial("ws://"+s.Addr("ws").String()+"/", hdr)
}

func mustWS(t *testing.T, s *Server, ip string) *websocket.Conn {
	t.Helper()
	c, _, err := dialWS(s, ip, nil)
	if err != nil {
		t.Fatalf("dial ws from %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// echo checks that c is served: a message comes back.
func echo(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := c.ReadMessage()
	if err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

// isTimeout reports whether err is a read deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readUntilClosed reads c until it ends and returns the echoes and the
// final error.
func readUntilClosed(t *testing.T, c *websocket.Conn) ([]string, error) {
	t.Helper()
	var got []string
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("not closed after %q", got)
			}
			return got, err
		}
		got = append(got, string(msg))
	}
}

// TestThrottlePolicies: a connection over its message budget gets what
// its listener's policy says, counted per policy, and the others are
// unaffected unless the policy names their IP.
func TestThrottlePolicies(t *testing.T) {
	tests := []struct {
		policy    string
		wantCode  int // close code seen by the flooder; 0: stays open; -1: no close frame
		closesIP  bool
		throttled uint64
	}{
		{"drop", 0, false, 5},
		{"close", websocket.ClosePolicyViolation, false, 1},
		{"force_close", -1, false, 1},
		{"close_ip", websocket.ClosePolicyViolation, true, 1},
		{"force_close_ip", -1, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			t.Parallel()
			s := startLimited(t, Config{Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0",
				RateLimit: RateLimit{Messages: 5, Per: time.Hour, Policy: tt.policy}}}})
			flooder := mustWS(t, s, "127.0.0.1")
			sameIP := mustWS(t, s, "127.0.0.1")
			otherIP := mustWS(t, s, "127.0.0.2")
			for i := range 10 {
				if err := flooder.WriteMessage(websocket.TextMessage, []byte{'0' + byte(i)}); err != nil {
					if tt.wantCode == -1 && i > 5 {
						break // already cut by the forced close of the sixth
					}
					t.Fatal(err)
				}
			}
			if tt.wantCode == 0 {
				// Five echoes, then nothing: the rest were dropped.
				for i := range 5 {
					_ = flooder.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, msg, err := flooder.ReadMessage(); err != nil || string(msg) != string(rune('0'+i)) {
						t.Fatalf("echo %d: %q, %v", i, msg, err)
					}
				}
				waitFor(t, 5*time.Second, "the throttled counter", func() bool { return s.Stats().Throttled["drop"] == 5 })
				_ = flooder.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, msg, err := flooder.ReadMessage(); !isTimeout(err) {
					t.Fatalf("after the budget: %q, %v; want nothing", msg, err)
				}
			} else {
				echoes, err := readUntilClosed(t, flooder)
				if len(echoes) > 5 {
					t.Fatalf("%d echoes, want at most the 5 of the budget", len(echoes))
				}
				var ce *websocket.CloseError
				switch {
				case tt.wantCode > 0 && (!errors.As(err, &ce) || ce.Code != tt.wantCode || ce.Text != throttleText):
					t.Fatalf("flooder closed with %v, want close %d %q", err, tt.wantCode, throttleText)
				case tt.wantCode < 0 && errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
					t.Fatalf("force-closed flooder got a close frame: %v", err)
				}
			}
			if tt.closesIP {
				if _, err := readUntilClosed(t, sameIP); err == nil {
					t.Fatal("the other connection of the IP was not closed")
				}
			} else {
				echo(t, sameIP, "same ip")
			}
			echo(t, otherIP, "other ip")
			st := s.Stats()
			for _, p := range policyNames {
				want := uint64(0)
				if p == tt.policy {
					want = tt.throttled
				}
				if st.Throttled[p] != want {
					t.Errorf("Throttled[%s] = %d, want %d (%v)", p, st.Throttled[p], want, st.Throttled)
				}
			}
			wantClosed := uint64(0)
			switch {
			case tt.closesIP:
				wantClosed = 2
			case tt.wantCode != 0:
				wantClosed = 1
			}
			waitFor(t, 5*time.Second, "the throttled close count", func() bool { return s.Stats().Closes["throttled"] == wantClosed })
		})
	}
}

// TestThrottleTCP: a TCP client over its budget with policy close gets
// at most its budget's echoes, then FIN.
func TestThrottleTCP(t *testing.T) {
	s := startLimited(t, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0",
		RateLimit: RateLimit{Messages: 3, Per: time.Hour, Policy: "close"}}}})
	c, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("a\nb\nc\nd\ne\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || len(got) > len("a\nb\nc\n") || !strings.HasPrefix("a\nb\nc\n", string(got)) {
		t.Fatalf("read %q, %v; want at most the 3 echoes, then EOF", got, err)
	}
	waitFor(t, 5*time.Second, "the counters", func() bool {
		st := s.Stats()
		return st.Throttled["close"] == 1 && st.Closes["throttled"] == 1 && st.MessagesIn == 3
	})
}

// TestFloodAccounting: in a flood of 20,000 messages with policy drop,
// every message is either delivered within the budget or counted as
// throttled, and a client of another IP is served meanwhile.
func TestFloodAccounting(t *testing.T) {
	const n, budget = 20000, 1000
	s := startLimited(t, Config{
		IPRateLimit: RateLimit{Messages: 2 * budget, Policy: "drop"},
		Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0", RateLimit: RateLimit{Messages: budget}},
			{Protocol: "ws", Addr: "127.0.0.1:0"}},
	})
	bystander := mustWS(t, s, "127.0.0.2")
	c, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { _, _ = io.Copy(io.Discard, c) }() // the echoes
	start := time.Now()
	if _, err := c.Write([]byte(strings.Repeat("x\n", n))); err != nil {
		t.Fatal(err)
	}
	echo(t, bystander, "served during the flood")
	waitFor(t, 10*time.Second, "every message accounted for", func() bool {
		st := s.Stats()
		return st.MessagesIn-1+st.Throttled["drop"] == n
	})
	st := s.Stats()
	allowed := uint64(budget + budget*time.Since(start).Seconds() + 1)
	if in := st.MessagesIn - 1; in < budget || in > allowed {
		t.Fatalf("%d messages delivered, want from %d (the burst) to %d", in, budget, allowed)
	}
}

// TestIPRateLimitAcrossListeners: the budget of a remote IP is shared by
// its connections on every listener; another IP has its own.
func TestIPRateLimitAcrossListeners(t *testing.T) {
	s := startLimited(t, Config{
		IPRateLimit: RateLimit{Messages: 6, Per: time.Hour},
		Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"},
			{Protocol: "tcp", Addr: "127.0.0.1:0"}},
	})
	ws := mustWS(t, s, "127.0.0.1")
	tc, err := dialerFrom("127.0.0.1").Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	other := mustWS(t, s, "127.0.0.2")
	for range 5 {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("w")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tc.Write([]byte(strings.Repeat("t\n", 5))); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := other.WriteMessage(websocket.TextMessage, []byte("o")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "10 messages in and 4 dropped", func() bool {
		st := s.Stats()
		return st.MessagesIn == 11 && st.Throttled["drop"] == 4
	})
	if n := s.lim.ips.size(); n != 2 {
		t.Fatalf("%d IPs in the table, want 2", n)
	}
}

// TestConnLimits: sockets over max_conns, max_conns_per_ip or the accept
// rate are refused right after accept: a WebSocket one gets 503 (429 for
// its IP's limit) with Retry-After, or is closed at once over the accept
// rate; a TCP one is closed. Each refusal is counted, and a closed socket
// gives its place back.
func TestConnLimits(t *testing.T) {
	listeners := func() []ListenerConfig {
		return []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}, {Protocol: "tcp", Addr: "127.0.0.1:0"}}
	}
	wantStatus := func(t *testing.T, s *Server, ip string, status int) {
		t.Helper()
		c, resp, err := dialWS(s, ip, nil)
		if err == nil {
			c.Close()
			t.Fatalf("upgrade from %s accepted, want %d", ip, status)
		}
		if resp == nil || resp.StatusCode != status || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("upgrade from %s: %v, %v; want %d with Retry-After", ip, resp, err, status)
		}
	}
	wantTCPClosed := func(t *testing.T, s *Server, ip string) {
		t.Helper()
		c, err := dialerFrom(ip).Dial("tcp", s.Addr("tcp").String())
		if err != nil {
			return // refused is fine too
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("a tcp socket over the limit stayed open: %v", err)
		}
	}

	t.Run("total", func(t *testing.T) {
		s := startLimited(t, Config{MaxConns: 2, Listeners: listeners()})
		first := mustWS(t, s, "127.0.0.1")
		tc, err := net.Dial("tcp", s.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		// The kernel completes a TCP handshake before the gateway accepts
		// the socket: wait until both places are taken.
		waitFor(t, 5*time.Second, "2 sockets counted", func() bool { return s.lim.open.Load() == 2 })
		wantStatus(t, s, "127.0.0.2", http.StatusServiceUnavailable)
		wantTCPClosed(t, s, "127.0.0.3")
		waitFor(t, 5*time.Second, "2 refusals", func() bool { return s.Stats().Refused["total"] == 2 })
		echo(t, first, "still served")
		_ = first.Close()
		waitFor(t, 5*time.Second, "the closed socket's place", func() bool { return s.lim.open.Load() == 1 })
		echo(t, mustWS(t, s, "127.0.0.2"), "admitted")
		waitFor(t, 5*time.Second, "no refused socket waiting", func() bool { return s.lim.lingering.Load() == 0 })
	})

	t.Run("per ip", func(t *testing.T) {
		s := startLimited(t, Config{MaxConnsPerIP: 2, Listeners: listeners()})
		mustWS(t, s, "127.0.0.1")
		tc, err := dialerFrom("127.0.0.1").Dial("tcp", s.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "2 sockets counted", func() bool { return s.lim.open.Load() == 2 })
		wantStatus(t, s, "127.0.0.1", http.StatusTooManyRequests)
		wantTCPClosed(t, s, "127.0.0.1")
		echo(t, mustWS(t, s, "127.0.0.2"), "another ip")
		waitFor(t, 5*time.Second, "2 refusals", func() bool { return s.Stats().Refused["per_ip"] == 2 })
		_ = tc.Close()
		waitFor(t, 5*time.Second, "the place back", func() bool { return s.lim.open.Load() == 2 })
		echo(t, mustWS(t, s, "127.0.0.1"), "admitted again")
	})

	t.Run("accept rate", func(t *testing.T) {
		s := startLimited(t, Config{MaxNewConnsPerSec: 1, Listeners: listeners()})
		start := time.Now()
		mustWS(t, s, "127.0.0.1")
		c, resp, err := dialWS(s, "127.0.0.1", nil)
		if err == nil {
			c.Close()
		}
		wantTCPClosed(t, s, "127.0.0.1")
		if time.Since(start) > 900*time.Millisecond {
			t.Skip("the machine is too slow to dial 3 sockets within the accept rate's second")
		}
		if err == nil || resp != nil {
			t.Fatalf("a socket over the accept rate was answered: %v, %v; want it closed", resp, err)
		}
		if n := s.Stats().Refused["rate"]; n != 2 {
			t.Fatalf("Refused[rate] = %d, want 2", n)
		}
	})

	t.Run("ip table full", func(t *testing.T) {
		s := startLimited(t, Config{MaxConnsPerIP: 5, MaxIPs: 2, Listeners: listeners()})
		mustWS(t, s, "127.0.0.1")
		second := mustWS(t, s, "127.0.0.2")
		wantStatus(t, s, "127.0.0.3", http.StatusServiceUnavailable)
		waitFor(t, 5*time.Second, "the refusal", func() bool { return s.Stats().Refused["ip_table"] == 1 })
		_ = second.Close()
		waitFor(t, 5*time.Second, "the closed IP to leave the table", func() bool { return s.lim.ips.size() == 1 })
		echo(t, mustWS(t, s, "127.0.0.3"), "admitted")
	})
}

// TestOriginHandshake: an upgrade whose Origin is not allowed gets 403 and
// is counted; allowed origins and requests without one are upgraded.
func TestOriginHandshake(t *testing.T) {
	s := startLimited(t, Config{Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0",
		Origins: []string{"https://example.com", "*.example.org"}}}})
	for _, tt := range []struct {
		origin string
		status int
	}{
		{"https://example.com", http.StatusSwitchingProtocols},
		{"http://a.example.org", http.StatusSwitchingProtocols},
		{"", http.StatusSwitchingProtocols},
		{"https://evil.com", http.StatusForbidden},
		{"https://example.com.evil.com", http.StatusForbidden},
		{"http://example.com", http.StatusForbidden},
		{"null", http.StatusForbidden},
	} {
		hdr := http.Header{}
		if tt.origin != "" {
			hdr.Set("Origin", tt.origin)
		}
		c, resp, err := dialWS(s, "127.0.0.1", hdr)
		if c != nil {
			echo(t, c, "hello")
			c.Close()
		}
		if resp == nil || resp.StatusCode != tt.status {
			t.Fatalf("origin %q: %v, %v; want %d", tt.origin, resp, err, tt.status)
		}
	}
	if n := s.Stats().Refused["origin"]; n != 4 {
		t.Fatalf("Refused[origin] = %d, want 4", n)
	}
}

func TestOriginAllowed(t *testing.T) {
	list := []string{"https://example.com", "*.example.org", "http://localhost:8080"}
	for _, tt := range []struct {
		origin string
		want   bool
	}{
		{"https://example.com", true},
		{"HTTPS://EXAMPLE.COM", true},
		{"http://example.com", false},
		{"https://example.com:8443", false},
		{"https://sub.example.com", false},
		{"https://a.example.org", true},
		{"http://a.b.example.org", true},
		{"https://example.org", false},
		{"https://evilexample.org", false},
		{"http://localhost:8080", true},
		{"http://localhost", false},
		{"null", false},
		{"", false},
		{"https://user@example.com", false},
		{"https://example.com/path", false},
	} {
		if got := originAllowed(list, tt.origin); got != tt.want {
			t.Errorf("originAllowed(%q) = %v, want %v", tt.origin, got, tt.want)
		}
	}
	if !originAllowed(nil, "https://any.where") || !originAllowed([]string{"*"}, "null") {
		t.Error("an empty list or * must allow any origin")
	}
}

func TestLimitsConfigValidate(t *testing.T) {
	ws := ListenerConfig{Protocol: "ws", Addr: "127.0.0.1:0"}
	tcp := ListenerConfig{Protocol: "tcp", Addr: "127.0.0.1:0"}
	tests := []struct {
		name    string
		cfg     Config
		wantKey string // "" means valid
	}{
		{"all set", Config{MaxConns: 10, MaxConnsPerIP: 2, MaxNewConnsPerSec: 5, MaxIPs: 100,
			IPRateLimit: RateLimit{Messages: 10, Per: time.Second, Burst: 20, Policy: "close_ip"},
			Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0", Origins: []string{"*", "https://a.b", "x.y:80", "*.z"},
				RateLimit: RateLimit{Messages: 1, Policy: "force_close_ip"}}}}, ""},
		{"negative max_conns", Config{MaxConns: -1, Listeners: []ListenerConfig{ws}}, "max_conns"},
		{"negative max_conns_per_ip", Config{MaxConnsPerIP: -1, Listeners: []ListenerConfig{ws}}, "max_conns_per_ip"},
		{"negative accept rate", Config{MaxNewConnsPerSec: -1, Listeners: []ListenerConfig{ws}}, "max_new_conns_per_sec"},
		{"negative max_ips", Config{MaxIPs: -1, Listeners: []ListenerConfig{ws}}, "max_ips"},
		{"bad ip policy", Config{IPRateLimit: RateLimit{Messages: 1, Policy: "ban"}, Listeners: []ListenerConfig{ws}}, "ip_rate_limit.policy"},
		{"negative ip burst", Config{IPRateLimit: RateLimit{Burst: -1}, Listeners: []ListenerConfig{ws}}, "ip_rate_limit.burst"},
		{"negative messages", Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0",
			RateLimit: RateLimit{Messages: -1}}}}, "listeners[0].rate_limit.messages"},
		{"negative per", Config{Listeners: []ListenerConfig{tcp, {Protocol: "ws", Addr: "127.0.0.1:0",
			RateLimit: RateLimit{Per: -time.Second}}}}, "listeners[1].rate_limit.per"},
		{"origins on tcp", Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0",
			Origins: []string{"*"}}}}, "listeners[0].origins"},
		{"origin with path", Config{Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0",
			Origins: []string{"https://a.b/x"}}}}, "listeners[0].origins[0]"},
		{"empty origin", Config{Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0",
			Origins: []string{"ok.com", ""}}}}, "listeners[0].origins[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "gateway: "+tt.wantKey+":") {
				t.Fatalf("error %v does not name %q", err, tt.wantKey)
			}
		})
	}
}

// TestIPTable: the table's bound and its idle slots.
func TestIPTable(t *testing.T) {
	ip := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, i}) }
	now := time.Unix(1000, 0)
	tb := &ipTable{slots: map[netip.Addr]*ipSlot{}, max: 2, rate: RateLimit{Messages: 1, Per: time.Second}, keepIdle: time.Second}
	a, r := tb.acquire(ip(1), 1, now)
	if r != refusedNone || a.msgs == nil {
		t.Fatalf("first: %v", r)
	}
	if _, r := tb.acquire(ip(1), 1, now); r != refusedPerIP {
		t.Fatalf("second of one IP with max 1: %v, want per_ip", r)
	}
	b, _ := tb.acquire(ip(2), 1, now)
	if _, r := tb.acquire(ip(3), 1, now); r != refusedIPTable {
		t.Fatalf("third IP in a full table: %v, want ip_table", r)
	}
	// An idle slot keeps its budget: a reconnect does not refill it.
	if !a.msgs.AllowN(now, 1) || a.msgs.AllowN(now, 1) {
		t.Fatal("budget of 1")
	}
	tb.release(a, now)
	again, _ := tb.acquire(ip(1), 1, now)
	if again != a || again.msgs.AllowN(now, 1) {
		t.Fatal("a reconnect got a new budget")
	}
	tb.release(again, now)
	// A full table evicts idle slots for a new IP.
	c, r := tb.acquire(ip(3), 1, now.Add(time.Millisecond))
	if r != refusedNone || tb.size() != 2 {
		t.Fatalf("new IP with an idle slot to evict: %v, size %d", r, tb.size())
	}
	// The periodic sweep drops slots idle for keepIdle.
	tb.release(b, now)
	tb.release(c, now)
	tb.acquire(ip(4), 1, now.Add(sweepEvery+time.Second))
	if n := tb.size(); n != 1 {
		t.Fatalf("%d slots after the sweep, want 1", n)
	}
	// Without a budget to keep, a slot goes with its last socket.
	tb = &ipTable{slots: map[netip.Addr]*ipSlot{}, max: 10}
	s, _ := tb.acquire(ip(1), 0, now)
	tb.release(s, now)
	if n := tb.size(); n != 0 {
		t.Fatalf("%d slots, want 0", n)
	}
}
