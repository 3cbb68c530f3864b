package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// msgWorker is a bare-NATS worker that records, per client, its connect
// event, its messages in order and its close reason. It acks every batch
// with the actions actionsFor returns for a message (nil: none).
type msgWorker struct {
	mu        sync.Mutex
	clients   []string            // in connect order
	msgs      map[string][]string // client id -> messages
	closed    map[string]string   // client id -> close reason
	actionsOf func(client, msg string) []bus.Action
}

func startMsgWorker(t *testing.T, nc *nats.Conn, actionsOf func(client, msg string) []bus.Action) *msgWorker {
	t.Helper()
	w := &msgWorker{msgs: map[string][]string{}, closed: map[string]string{}, actionsOf: actionsOf}
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
				w.clients = append(w.clients, b.Client)
			case bus.EventMessage:
				w.msgs[b.Client] = append(w.msgs[b.Client], string(ev.Data))
				if w.actionsOf != nil {
					ack.Actions = append(ack.Actions, w.actionsOf(b.Client, string(ev.Data))...)
				}
			case bus.EventClose:
				w.closed[b.Client] = ev.CloseReason
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

// client waits for the i-th connected client (from 0) and returns its id.
func (w *msgWorker) client(t *testing.T, i int) string {
	t.Helper()
	var id string
	waitFor(t, 5*time.Second, fmt.Sprintf("connect event %d", i), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.clients) > i {
			id = w.clients[i]
		}
		return id != ""
	})
	return id
}

func (w *msgWorker) messages(id string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs[id]...)
}

func (w *msgWorker) closeReason(id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed[id]
}

// command sends cmd to gateway s over the bus and returns the reply's
// error code ("" for none).
func command(t *testing.T, nc *nats.Conn, s *Server, cmd bus.Command) string {
	t.Helper()
	cmd.Version = bus.Version
	subj, _ := bus.NewSubjects("")
	m, err := nc.Request(subj.Cmd(s.ID()), bus.AppendCommand(nil, &cmd), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep bus.Reply
	if err := bus.DecodeReply(m.Data, &rep); err != nil {
		t.Fatal(err)
	}
	return rep.ErrorCode
}

// rxClient is a WebSocket or framed TCP (line) client.
type rxClient struct {
	ws  *websocket.Conn
	tcp net.Conn
	rd  *bufio.Reader
}

func dialRx(t *testing.T, s *Server, protocol string) *rxClient {
	t.Helper()
	addr := s.Addr(protocol).String()
	if protocol == "ws" {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws.Close() })
		return &rxClient{ws: ws}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rxClient{tcp: c, rd: bufio.NewReader(c)}
}

// send writes one message; it fails when the write does not complete
// within d (the gateway does not read).
func (c *rxClient) send(msg string, d time.Duration) error {
	if c.ws != nil {
		_ = c.ws.SetWriteDeadline(time.Now().Add(d))
		return c.ws.WriteMessage(websocket.TextMessage, []byte(msg))
	}
	_ = c.tcp.SetWriteDeadline(time.Now().Add(d))
	_, err := c.tcp.Write([]byte(msg + "\n"))
	return err
}

// recv reads one message.
func (c *rxClient) recv(t *testing.T) string {
	t.Helper()
	if c.ws != nil {
		_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	_ = c.tcp.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(line, "\n")
}

// rxConfig is a gateway with one listener of protocol.
func rxConfig(protocol string) Config {
	l := ListenerConfig{Protocol: protocol, Addr: "127.0.0.1:0"}
	if protocol == "ws" {
		l.PingInterval, l.IdleTimeout = -1, -1
	}
	return Config{Listeners: []ListenerConfig{l}, MaxPendingEvents: 1 << 16, MaxPendingBytes: 64 << 20}
}

func startRx(t *testing.T, cfg Config, actionsOf func(client, msg string) []bus.Action) (*Server, *msgWorker, *nats.Conn) {
	t.Helper()
	nc := testBus(t)
	w := startMsgWorker(t, nc, actionsOf)
	s := startServer(t, nc, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, w, nc
}

// TestPauseResumeFlood: a paused client that floods is not read: its
// writes stall (TCP flow control) while the gateway holds at most what
// its socket had already read (HeldBytes, bounded by maxStash) and
// delivers nothing; after ResumeRecv every message arrives, in order.
// Sends to the paused client still go out, also when they fill its
// socket (the engine then turns reading back on, and the gateway off
// again); pings and the idle timeout leave the paused client alone.
func TestPauseResumeFlood(t *testing.T) {
	const (
		size  = 4 << 10
		total = 24 << 20 // far more than the kernel buffers of both ends
		// With blocked sends: 512 KiB to the client (small socket buffers) before it floods, which
		// it reads only once its writes stalled.
		outSize = 64 << 10
		outN    = 8
	)
	for _, tc := range []struct {
		protocol string
		blocked  bool
	}{{"ws", false}, {"tcp", false}, {"ws", true}, {"tcp", true}} {
		t.Run(fmt.Sprintf("%s/blocked_sends=%v", tc.protocol, tc.blocked), func(t *testing.T) {
			cfg := rxConfig(tc.protocol)
			cfg.Listeners[0].IdleTimeout = 300 * time.Millisecond
			cfg.Listeners[0].MaxQueueBytes = 64 << 20
			s, w, nc := startRx(t, cfg, nil)
			cl := dialRx(t, s, tc.protocol)
			if err := cl.send("first", time.Second); err != nil {
				t.Fatal(err)
			}
			id := w.client(t, 0)
			waitFor(t, 5*time.Second, "the first message", func() bool { return len(w.messages(id)) == 1 })
			if code := command(t, nc, s, bus.Command{Op: bus.OpPauseRecv, Clients: []string{id}}); code != "" {
				t.Fatal(code)
			}
			c, err := s.lookup(id)
			if err != nil {
				t.Fatal(err)
			}
			out := strings.Repeat("o", outSize)
			if tc.blocked {
				// Small socket buffers on both ends, so that 512 KiB blocks.
				rc, err := c.sock().nc.SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				_ = rc.Control(func(fd uintptr) {
					_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
				})
				sock := cl.tcp
				if cl.ws != nil {
					sock = cl.ws.UnderlyingConn()
				}
				if err := sock.(*net.TCPConn).SetReadBuffer(32 << 10); err != nil {
					t.Fatal(err)
				}
				for range outN {
					if code := command(t, nc, s, bus.Command{Op: bus.OpSendToClient, Clients: []string{id}, Data: []byte(out)}); code != "" {
						t.Fatal(code)
					}
				}
				waitFor(t, 5*time.Second, "a blocked write to the client", func() bool { return c.unsent.Load() > 0 })
			}

			// Flood until a write stalls for a second: the gateway
			// stopped reading and the kernel buffers are full.
			pad := strings.Repeat("x", size-16)
			sent := 0
			for sent*size < total {
				if err := cl.send(fmt.Sprintf("%08d%s", sent, pad), time.Second); err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						t.Fatal(err)
					}
					break
				}
				sent++
			}
			if sent*size >= total {
				t.Fatalf("all %d bytes were taken while paused", total)
			}
			if tc.blocked {
				for i := range outN {
					if got := cl.recv(t); got != out {
						t.Fatalf("send %d to the paused client: %d bytes", i, len(got))
					}
				}
			}
			// Sends to a paused client still go out.
			if code := command(t, nc, s, bus.Command{Op: bus.OpSendToClient, Clients: []string{id}, Data: []byte("while paused")}); code != "" {
				t.Fatal(code)
			}
			if got := cl.recv(t); got != "while paused" {
				t.Fatalf("a paused client got %q", got)
			}
			// The idle timeout is 300 ms: the paused client outlives it.
			time.Sleep(500 * time.Millisecond)
			if got := len(w.messages(id)); got != 1 {
				t.Fatalf("%d messages delivered while paused", got-1)
			}
			c.evmu.Lock()
			pending := c.pendingBytes
			c.evmu.Unlock()
			held := s.HeldBytes()
			if held > maxStash || pending != 0 || c.closing() {
				t.Fatalf("paused client: %d bytes held, %d pending, closing %v", held, pending, c.closing())
			}
			t.Logf("%d KiB written before the writes stalled, %d KiB held by the gateway", sent*size>>10, held>>10)

			// A write that timed out may have left part of a message in
			// the kernel (WebSocket: the connection is then unusable for
			// the client), so the count to expect is what completed.
			if code := command(t, nc, s, bus.Command{Op: bus.OpResumeRecv, Clients: []string{id}}); code != "" {
				t.Fatal(code)
			}
			waitFor(t, 30*time.Second, "every flooded message", func() bool { return len(w.messages(id)) >= 1+sent })
			got := w.messages(id)[1 : 1+sent]
			for i, m := range got {
				if !strings.HasPrefix(m, fmt.Sprintf("%08d", i)) || len(m) != size-8 {
					t.Fatalf("message %d of %d after resume is %.12q (%d bytes)", i, sent, m, len(m))
				}
			}
			if s.HeldBytes() != 0 {
				t.Fatalf("%d bytes still held after resume", s.HeldBytes())
			}
		})
	}
}

// TestDelayReceive: a delay_receive listener registers a client (its
// connect event reaches the worker) but delivers none of its messages
// before Confirm, and all of them, in order, after; an unconfirmed client
// is closed with reason confirm_timeout at confirm_timeout.
func TestDelayReceive(t *testing.T) {
	for _, protocol := range []string{"ws", "tcp"} {
		t.Run(protocol, func(t *testing.T) {
			cfg := rxConfig(protocol)
			cfg.Listeners[0].DelayReceive = true
			cfg.Listeners[0].ConfirmTimeout = time.Second
			s, w, nc := startRx(t, cfg, nil)

			cl := dialRx(t, s, protocol)
			for i := range 50 {
				if err := cl.send(fmt.Sprintf("m%02d", i), time.Second); err != nil {
					t.Fatal(err)
				}
			}
			id := w.client(t, 0)
			time.Sleep(300 * time.Millisecond)
			if got := w.messages(id); len(got) != 0 {
				t.Fatalf("%d messages delivered before Confirm", len(got))
			}
			if code := command(t, nc, s, bus.Command{Op: bus.OpConfirm, Clients: []string{id}}); code != "" {
				t.Fatal(code)
			}
			waitFor(t, 5*time.Second, "the messages after Confirm", func() bool { return len(w.messages(id)) == 50 })
			for i, m := range w.messages(id) {
				if m != fmt.Sprintf("m%02d", i) {
					t.Fatalf("message %d is %q", i, m)
				}
			}
			// Confirmed in time: the timeout does not close it.
			time.Sleep(cfg.Listeners[0].ConfirmTimeout)
			if err := cl.send("later", time.Second); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "a message after the timeout", func() bool { return len(w.messages(id)) == 51 })

			// Never confirmed: closed at the timeout, nothing delivered.
			late := dialRx(t, s, protocol)
			if err := late.send("unheard", time.Second); err != nil {
				t.Fatal(err)
			}
			lateID := w.client(t, 1)
			waitFor(t, 5*time.Second, "the unconfirmed client's close", func() bool { return w.closeReason(lateID) != "" })
			if r := w.closeReason(lateID); r != "confirm_timeout" || len(w.messages(lateID)) != 0 {
				t.Fatalf("unconfirmed client: close reason %q, %d messages", r, len(w.messages(lateID)))
			}
			if protocol == "ws" {
				if code, err := readUntilClose(late.ws, 5*time.Second); code != 1001 {
					t.Fatalf("close code %d (%v), want 1001", code, err)
				}
			}
			if n := s.Stats().Closes["confirm_timeout"]; n != 1 {
				t.Fatalf("closes[confirm_timeout] = %d", n)
			}
		})
	}
}

// TestSetBinary: after SetBinary (from the API or a worker's action) a
// real WebSocket client receives every message as a binary frame, text
// included, sent one by one or by a fan-out; SetBinary off restores text.
func TestSetBinary(t *testing.T) {
	s, w, nc := startRx(t, rxConfig("ws"), func(client, msg string) []bus.Action {
		switch msg {
		case "bin-on":
			return []bus.Action{{Type: bus.ActionSetBinary, Flag: true}, {Type: bus.ActionSend, Data: []byte("by action")}}
		case "bin-off":
			return []bus.Action{{Type: bus.ActionSetBinary}, {Type: bus.ActionSend, Data: []byte("text again")}}
		}
		return nil
	})
	cl := dialRx(t, s, "ws")
	other := dialRx(t, s, "ws")
	if err := cl.send("hello", time.Second); err != nil {
		t.Fatal(err)
	}
	id := w.client(t, 0)
	otherID := w.client(t, 1)
	expect := func(ws *websocket.Conn, typ int, msg string) {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		gotType, got, err := ws.ReadMessage()
		if err != nil || gotType != typ || string(got) != msg {
			t.Fatalf("got type %d %q (%v), want type %d %q", gotType, got, err, typ, msg)
		}
	}
	send := func(data string) {
		t.Helper()
		if code := command(t, nc, s, bus.Command{Op: bus.OpSendToClient, Clients: []string{id}, Data: []byte(data)}); code != "" {
			t.Fatal(code)
		}
	}
	send("plain")
	expect(cl.ws, websocket.TextMessage, "plain")

	if code := command(t, nc, s, bus.Command{Op: bus.OpSetBinary, Clients: []string{id}, Flag: true}); code != "" {
		t.Fatal(code)
	}
	send("now binary")
	expect(cl.ws, websocket.BinaryMessage, "now binary")
	if code := command(t, nc, s, bus.Command{Op: bus.OpSendToAll, Data: []byte("to all")}); code != "" {
		t.Fatal(code)
	}
	expect(cl.ws, websocket.BinaryMessage, "to all")
	expect(other.ws, websocket.TextMessage, "to all")
	_ = otherID

	if code := command(t, nc, s, bus.Command{Op: bus.OpSetBinary, Clients: []string{id}}); code != "" {
		t.Fatal(code)
	}
	send("text")
	expect(cl.ws, websocket.TextMessage, "text")

	// The same through a worker's actions.
	if err := cl.send("bin-on", time.Second); err != nil {
		t.Fatal(err)
	}
	expect(cl.ws, websocket.BinaryMessage, "by action")
	if err := cl.send("bin-off", time.Second); err != nil {
		t.Fatal(err)
	}
	expect(cl.ws, websocket.TextMessage, "text again")
}

// TestConnControlBadInput: PauseRecv, ResumeRecv, Confirm and SetBinary
// answer not_found for an unknown or closed client and invalid_client for
// a malformed id; a UDP client cannot pause (invalid_request) and a
// delay_receive udp listener is refused by the config.
func TestConnControlBadInput(t *testing.T) {
	cfg := rxConfig("ws")
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Protocol: "udp", Addr: "127.0.0.1:0"})
	s, w, nc := startRx(t, cfg, nil)
	unknown := s.ID() + "00000fffff"
	elsewhere := "abcdefabcd0000000001"
	cl := dialRx(t, s, "ws")
	if err := cl.send("x", time.Second); err != nil {
		t.Fatal(err)
	}
	closedID := w.client(t, 0)
	_ = cl.ws.Close()
	waitFor(t, 5*time.Second, "the close event", func() bool { return w.closeReason(closedID) != "" })

	u, err := net.Dial("udp", s.Addr("udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	udpID := w.client(t, 1)

	for _, op := range []bus.Op{bus.OpPauseRecv, bus.OpResumeRecv, bus.OpConfirm, bus.OpSetBinary} {
		for _, tc := range []struct {
			client, code string
		}{
			{unknown, bus.ErrCodeNotFound},
			{elsewhere, bus.ErrCodeNotFound},
			{closedID, bus.ErrCodeNotFound},
			{"nope", bus.ErrCodeInvalidClient},
		} {
			if got := command(t, nc, s, bus.Command{Op: op, Clients: []string{tc.client}}); got != tc.code {
				t.Errorf("%s(%q) = %q, want %q", op, tc.client, got, tc.code)
			}
		}
	}
	for op, want := range map[bus.Op]string{
		bus.OpPauseRecv: bus.ErrCodeInvalidRequest, bus.OpResumeRecv: bus.ErrCodeInvalidRequest,
		bus.OpConfirm: "", bus.OpSetBinary: "",
	} {
		if got := command(t, nc, s, bus.Command{Op: op, Clients: []string{udpID}}); got != want {
			t.Errorf("%s(udp client) = %q, want %q", op, got, want)
		}
	}
	bad := Config{Listeners: []ListenerConfig{{Protocol: "udp", Addr: "127.0.0.1:0", DelayReceive: true}}}
	if _, err := New(nc, bad); err == nil || !strings.Contains(err.Error(), "delay_receive") {
		t.Fatalf("delay_receive on udp: %v", err)
	}
	if !bytes.Equal([]byte(ReasonConfirmTimeout.String()), []byte("confirm_timeout")) || ReasonConfirmTimeout.wsCode() != 1001 {
		t.Fatalf("confirm_timeout reason %q, code %d", ReasonConfirmTimeout, ReasonConfirmTimeout.wsCode())
	}
}

// TestCloseWhilePaused: a paused client closed by the API gets its close
// frame and goes at once (the gateway sees the client's FIN although it
// does not read), not after close_timeout; its close event says why.
func TestCloseWhilePaused(t *testing.T) {
	cfg := rxConfig("ws")
	cfg.CloseTimeout = 10 * time.Second
	s, w, nc := startRx(t, cfg, nil)
	cl := dialRx(t, s, "ws")
	if err := cl.send("x", time.Second); err != nil {
		t.Fatal(err)
	}
	id := w.client(t, 0)
	if code := command(t, nc, s, bus.Command{Op: bus.OpPauseRecv, Clients: []string{id}}); code != "" {
		t.Fatal(code)
	}
	start := time.Now()
	if code := command(t, nc, s, bus.Command{Op: bus.OpCloseClient, Clients: []string{id}}); code != "" {
		t.Fatal(code)
	}
	if code, err := readUntilClose(cl.ws, 5*time.Second); code != websocket.CloseNormalClosure {
		t.Fatalf("close code %d (%v)", code, err)
	}
	waitFor(t, 5*time.Second, "the close event", func() bool { return w.closeReason(id) != "" })
	if r, d := w.closeReason(id), time.Since(start); r != "close_requested" || d > 3*time.Second {
		t.Fatalf("close reason %q after %v", r, d)
	}
}
