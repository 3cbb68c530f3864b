package gateway

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/framing"
)

// udpWorker is a bare-NATS worker for UDP tests: it echoes every message,
// names clients by their "hello:<name>" message and records connects and
// close reasons.
type udpWorker struct {
	mu       sync.Mutex
	names    map[string]string // name -> client id
	connects map[string]int    // client id -> connect events
	closed   map[string]string // client id -> close reason
}

func startUDPWorker(t *testing.T, nc *nats.Conn) *udpWorker {
	t.Helper()
	w := &udpWorker{names: map[string]string{}, connects: map[string]int{}, closed: map[string]string{}}
	subj, _ := bus.NewSubjects("")
	sub, err := nc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var b bus.EventBatch
		if err := bus.DecodeEventBatch(m.Data, &b); err != nil {
			t.Error(err)
			return
		}
		ack := bus.Ack{Delivery: b.Delivery}
		w.mu.Lock()
		for _, ev := range b.Events {
			switch ev.Type {
			case bus.EventConnect:
				w.connects[b.Client]++
			case bus.EventClose:
				w.closed[b.Client] = ev.CloseReason
			case bus.EventMessage:
				if name, ok := strings.CutPrefix(string(ev.Data), "hello:"); ok {
					w.names[name] = b.Client
				}
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: ev.Data, Flag: ev.Binary})
			}
		}
		w.mu.Unlock()
		_ = m.Respond(bus.AppendAck(nil, &ack))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

func (w *udpWorker) id(t *testing.T, name string) string {
	t.Helper()
	var id string
	waitFor(t, 5*time.Second, "hello from "+name, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		id = w.names[name]
		return id != ""
	})
	return id
}

func (w *udpWorker) closeReason(id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed[id]
}

// startUDP starts a gateway with cfg and a udpWorker.
func startUDP(t *testing.T, cfg Config) (*Server, *udpWorker, *nats.Conn) {
	t.Helper()
	nc := testBus(t)
	w := startUDPWorker(t, nc)
	s := startServer(t, nc, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, w, nc
}

// dialUDP returns a UDP socket connected to the listener name of s.
func dialUDP(t *testing.T, s *Server, name string) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, s.Addr(name).(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// exchange sends msg and returns the next datagram received (nil after a
// timeout).
func exchange(t *testing.T, c *net.UDPConn, msg []byte, timeout time.Duration) []byte {
	t.Helper()
	if msg != nil {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// ipv6Loopback reports whether ::1 can be bound.
func ipv6Loopback() bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// TestUDPEcho: each datagram is one message, each peer a client with its
// own id, over IPv4 and IPv6; with length framing the datagram holds one
// frame and the answer is framed the same way.
func TestUDPEcho(t *testing.T) {
	cfg := Config{Listeners: []ListenerConfig{
		{Name: "u4", Protocol: "udp", Addr: "127.0.0.1:0"},
		{Name: "len", Protocol: "udp", Addr: "127.0.0.1:0", Framing: framing.Config{Kind: "length", LengthSize: 2}},
	}}
	v6 := ipv6Loopback()
	if v6 {
		cfg.Listeners = append(cfg.Listeners, ListenerConfig{Name: "u6", Protocol: "udp", Addr: "[::1]:0"})
	}
	s, w, _ := startUDP(t, cfg)
	names := []string{"u4"}
	if v6 {
		names = append(names, "u6")
	} else {
		t.Log("no IPv6 loopback: IPv6 part skipped")
	}
	ids := map[string]bool{}
	for _, ln := range names {
		for _, peer := range []string{"a", "b"} {
			c := dialUDP(t, s, ln)
			for _, msg := range []string{"hello:" + ln + peer, "", "two\nlines\x00"} {
				got := exchange(t, c, []byte(msg), 5*time.Second)
				if got == nil || string(got) != msg {
					t.Fatalf("%s peer %s: echo of %q: got %q", ln, peer, msg, got)
				}
			}
			ids[w.id(t, ln+peer)] = true
		}
	}
	if len(ids) != 2*len(names) {
		t.Fatalf("%d distinct client ids for %d peers", len(ids), 2*len(names))
	}
	st := s.Stats()
	if st.Listeners["u4"].Connections != 2 {
		t.Fatalf("listener u4 stats: %+v", st.Listeners["u4"])
	}
	if v6 {
		var rep bus.Reply
		id := w.id(t, "u6a")
		if err := s.execute(&bus.Command{Op: bus.OpClientInfo, Clients: []string{id}, Fields: bus.FieldRemoteIP | bus.FieldSystem}, &rep); err != nil {
			t.Fatal(err)
		}
		if st := rep.State; st == nil || st.RemoteIP != "::1" || st.Protocol != "udp" {
			t.Fatalf("client info of an IPv6 peer: %+v", st)
		}
	}

	c := dialUDP(t, s, "len")
	frame := []byte("\x00\x05hello")
	if got := exchange(t, c, frame, 5*time.Second); !bytes.Equal(got, frame) {
		t.Fatalf("length framing: got %q want %q", got, frame)
	}
}

// TestUDPIdleTimeout: a peer quiet for idle_timeout is closed (its close
// event says idle_timeout), and its next datagram makes a new client.
func TestUDPIdleTimeout(t *testing.T) {
	s, w, _ := startUDP(t, Config{Listeners: []ListenerConfig{
		{Protocol: "udp", Addr: "127.0.0.1:0", IdleTimeout: 200 * time.Millisecond},
	}})
	c := dialUDP(t, s, "udp")
	if got := exchange(t, c, []byte("hello:x"), 5*time.Second); string(got) != "hello:x" {
		t.Fatalf("echo: %q", got)
	}
	id := w.id(t, "x")
	waitFor(t, 5*time.Second, "the idle close event", func() bool { return w.closeReason(id) != "" })
	if r := w.closeReason(id); r != "idle_timeout" {
		t.Fatalf("close reason %q, want idle_timeout", r)
	}
	if n := s.Stats().Connections; n != 0 {
		t.Fatalf("%d connections after the idle close", n)
	}
	if got := exchange(t, c, []byte("hello:y"), 5*time.Second); string(got) != "hello:y" {
		t.Fatalf("echo after the idle close: %q", got)
	}
	if id2 := w.id(t, "y"); id2 == id {
		t.Fatalf("the returning peer kept its old client id %s", id)
	}
}

// TestUDPBadInput: a datagram over max_message, or not one frame under
// length framing, closes a known peer (message_too_large, protocol_error)
// and is dropped (counted as bad_datagram) from a new one; other peers are
// still served.
func TestUDPBadInput(t *testing.T) {
	s, w, _ := startUDP(t, Config{Listeners: []ListenerConfig{
		{Name: "raw", Protocol: "udp", Addr: "127.0.0.1:0", MaxMessage: 100},
		{Name: "len", Protocol: "udp", Addr: "127.0.0.1:0", MaxMessage: 100, Framing: framing.Config{Kind: "length", LengthSize: 1}},
	}})
	bystander := dialUDP(t, s, "raw")
	if got := exchange(t, bystander, []byte("hello:bystander"), 5*time.Second); got == nil {
		t.Fatal("no echo")
	}
	big := bytes.Repeat([]byte("x"), 101)

	// New peers: dropped, counted, no client.
	fresh := dialUDP(t, s, "raw")
	if got := exchange(t, fresh, big, 300*time.Millisecond); got != nil {
		t.Fatalf("an over-size first datagram was answered: %q", got)
	}
	freshLen := dialUDP(t, s, "len")
	if got := exchange(t, freshLen, []byte("\x05abc"), 300*time.Millisecond); got != nil {
		t.Fatalf("a truncated frame was answered: %q", got)
	}
	if n := s.Stats().Refused["bad_datagram"]; n != 2 {
		t.Fatalf("bad_datagram = %d, want 2", n)
	}

	// Known peers: closed with the precise reason.
	cases := []struct {
		listener, name string
		bad            []byte
		reason         string
	}{
		{"raw", "big", big, "message_too_large"},
		{"len", "two", []byte("\x01a\x01b"), "protocol_error"},
		{"len", "short", []byte("\x09abc"), "protocol_error"},
	}
	for _, tc := range cases {
		c := dialUDP(t, s, tc.listener)
		hello := "hello:" + tc.name
		if tc.listener == "len" {
			hello = string(rune(len(hello))) + hello
		}
		if got := exchange(t, c, []byte(hello), 5*time.Second); got == nil {
			t.Fatalf("%s: no echo of hello", tc.name)
		}
		id := w.id(t, tc.name)
		if _, err := c.Write(tc.bad); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, tc.name+" close", func() bool { return w.closeReason(id) != "" })
		if r := w.closeReason(id); r != tc.reason {
			t.Fatalf("%s: close reason %q, want %q", tc.name, r, tc.reason)
		}
	}
	if got := exchange(t, bystander, []byte("still"), 5*time.Second); string(got) != "still" {
		t.Fatalf("bystander: %q", got)
	}
}

// TestUDPSendAndOversize: a send command reaches a UDP client as one
// datagram; a message that cannot fit in one datagram is refused with
// invalid_request in the command's reply, never truncated or split.
func TestUDPSendAndOversize(t *testing.T) {
	s, w, nc := startUDP(t, Config{Listeners: []ListenerConfig{
		{Protocol: "udp", Addr: "127.0.0.1:0", MaxMessage: 200 << 10},
	}})
	c := dialUDP(t, s, "udp")
	if got := exchange(t, c, []byte("hello:s"), 5*time.Second); got == nil {
		t.Fatal("no echo")
	}
	id := w.id(t, "s")
	subj, _ := bus.NewSubjects("")
	send := func(msg []byte) bus.Reply {
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToClient, Clients: []string{id}, Data: msg}
		m, err := nc.Request(subj.Cmd(s.ID()), bus.AppendCommand(nil, &cmd), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep bus.Reply
		if err := bus.DecodeReply(m.Data, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	full := bytes.Repeat([]byte("f"), MaxDatagram)
	if rep := send(full); rep.ErrorCode != "" {
		t.Fatalf("a send of %d bytes: %s %s", len(full), rep.ErrorCode, rep.Error)
	}
	if got := exchange(t, c, nil, 5*time.Second); !bytes.Equal(got, full) {
		t.Fatalf("got a datagram of %d bytes, want %d", len(got), len(full))
	}
	rep := send(append(full, 'x'))
	if rep.ErrorCode != bus.ErrCodeInvalidRequest || !strings.Contains(rep.Error, "datagram") {
		t.Fatalf("an over-size send: %q %q, want invalid_request", rep.ErrorCode, rep.Error)
	}
	if got := exchange(t, c, nil, 300*time.Millisecond); got != nil {
		t.Fatalf("something was sent for the over-size message: %d bytes", len(got))
	}
	if got := exchange(t, c, []byte("after"), 5*time.Second); string(got) != "after" {
		t.Fatalf("echo after the refused send: %q", got)
	}
}

// TestUDPPeerLimits: max_peers bounds the peer table (a new peer's
// datagram is dropped, counted as peers, known peers served); a
// listener's rate limit applies per peer.
func TestUDPPeerLimits(t *testing.T) {
	s, _, _ := startUDP(t, Config{Listeners: []ListenerConfig{
		{Name: "few", Protocol: "udp", Addr: "127.0.0.1:0", MaxPeers: 1},
		{Name: "slow", Protocol: "udp", Addr: "127.0.0.1:0", RateLimit: RateLimit{Messages: 1, Per: time.Hour}},
	}})
	first := dialUDP(t, s, "few")
	if got := exchange(t, first, []byte("one"), 5*time.Second); string(got) != "one" {
		t.Fatalf("first peer: %q", got)
	}
	second := dialUDP(t, s, "few")
	if got := exchange(t, second, []byte("two"), 300*time.Millisecond); got != nil {
		t.Fatalf("a peer over max_peers was served: %q", got)
	}
	if n := s.Stats().Refused["peers"]; n != 1 {
		t.Fatalf("refused peers = %d, want 1", n)
	}
	if got := exchange(t, first, []byte("again"), 5*time.Second); string(got) != "again" {
		t.Fatalf("first peer after the refusal: %q", got)
	}

	a, b := dialUDP(t, s, "slow"), dialUDP(t, s, "slow")
	for _, c := range []*net.UDPConn{a, b} {
		if got := exchange(t, c, []byte("in budget"), 5*time.Second); got == nil {
			t.Fatal("first message of a peer not echoed")
		}
	}
	if got := exchange(t, a, []byte("over budget"), 300*time.Millisecond); got != nil {
		t.Fatalf("a message over the peer's budget was echoed: %q", got)
	}
	if n := s.Stats().Throttled["drop"]; n != 1 {
		t.Fatalf("throttled drop = %d, want 1", n)
	}
}
