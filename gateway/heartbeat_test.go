package gateway

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// recorder is a bare-NATS worker: it acks every batch, remembers each
// client's close reason, names clients by their "hello:<name>" message and
// answers a "protect" message with a protect action.
type recorder struct {
	mu     sync.Mutex
	names  map[string]string // name -> client id
	closed map[string]string // client id -> close reason
}

func startRecorder(t *testing.T, nc *nats.Conn) *recorder {
	t.Helper()
	r := &recorder{names: map[string]string{}, closed: map[string]string{}}
	subj, _ := bus.NewSubjects("")
	sub, err := nc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var b bus.EventBatch
		if err := bus.DecodeEventBatch(m.Data, &b); err != nil {
			t.Error(err)
			return
		}
		ack := bus.Ack{Delivery: b.Delivery}
		r.mu.Lock()
		for _, ev := range b.Events {
			switch {
			case ev.Type == bus.EventClose:
				r.closed[b.Client] = ev.CloseReason
			case ev.Type == bus.EventMessage && strings.HasPrefix(string(ev.Data), "hello:"):
				r.names[strings.TrimPrefix(string(ev.Data), "hello:")] = b.Client
			case ev.Type == bus.EventMessage && string(ev.Data) == "protect":
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionProtect, Flag: true})
			}
		}
		r.mu.Unlock()
		_ = m.Respond(bus.AppendAck(nil, &ack))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return r
}

// id waits for the client that said hello:name and returns its id.
func (r *recorder) id(t *testing.T, name string) string {
	t.Helper()
	var id string
	waitFor(t, 5*time.Second, "hello from "+name, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		id = r.names[name]
		return id != ""
	})
	return id
}

// closeReason returns the reason of id's close event, "" before it.
func (r *recorder) closeReason(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed[id]
}

// startWithWorker starts a gateway with cfg's listeners and a recorder.
func startWithWorker(t *testing.T, cfg Config) (*Server, *recorder, *nats.Conn) {
	t.Helper()
	nc := testBus(t)
	r := startRecorder(t, nc)
	s := startServer(t, nc, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, r, nc
}

// dialHello connects a WebSocket client that says hello:name. Its pings are
// answered (the default) unless answer is false; pings counts them.
func dialHello(t *testing.T, s *Server, name string, answer bool, pings *atomic.Int64) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr("ws").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	ws.SetPingHandler(func(data string) error {
		if pings != nil {
			pings.Add(1)
		}
		if !answer {
			return nil
		}
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hello:"+name)); err != nil {
		t.Fatal(err)
	}
	return ws
}

// readUntilClose reads ws until it fails and returns the close code (0 if
// the connection ended without a close frame).
func readUntilClose(ws *websocket.Conn, timeout time.Duration) (int, error) {
	_ = ws.SetReadDeadline(time.Now().Add(timeout))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, nil
			}
			return 0, err
		}
	}
}

func wsListener(ping, idle time.Duration) ListenerConfig {
	return ListenerConfig{Protocol: "ws", Addr: "127.0.0.1:0", PingInterval: ping, IdleTimeout: idle}
}

// TestPongKeepsAlive: a quiet client is pinged every interval, and its
// pongs count as traffic: it outlives the idle timeout several times.
func TestPongKeepsAlive(t *testing.T) {
	s, r, _ := startWithWorker(t, Config{Listeners: []ListenerConfig{wsListener(100*time.Millisecond, 500*time.Millisecond)}})
	var pings atomic.Int64
	ws := dialHello(t, s, "a", true, &pings)
	id := r.id(t, "a")
	start := time.Now()
	done := make(chan error, 1)
	go func() { _, err := readUntilClose(ws, 20*time.Second); done <- err }()
	// The deadline is generous for loaded CI machines; a close ends the
	// wait early and fails below with its reason.
	waitFor(t, 15*time.Second, "12 pings", func() bool { return pings.Load() >= 12 || r.closeReason(id) != "" })
	if quiet := time.Since(start); quiet < 1100*time.Millisecond {
		t.Fatalf("12 pings in %v: faster than the 100ms interval", quiet)
	}
	if got := r.closeReason(id); got != "" {
		t.Fatalf("closed (%s) although it answered every ping", got)
	}
	if n := s.Stats().Closes["idle_timeout"]; n != 0 {
		t.Fatalf("idle closes = %d", n)
	}
	_ = ws.Close()
	<-done
}

// TestIdleTimeout: a client that answers nothing is closed after the idle
// timeout with close code 1001, and the worker gets its close event with
// reason idle_timeout. A protected client (by the API command or by a
// worker action) is neither pinged nor closed.
func TestIdleTimeout(t *testing.T) {
	s, r, nc := startWithWorker(t, Config{Listeners: []ListenerConfig{wsListener(100*time.Millisecond, 300*time.Millisecond)}})
	var pingsIdle, pingsCmd, pingsAction atomic.Int64
	idle := dialHello(t, s, "idle", false, &pingsIdle)
	byCmd := dialHello(t, s, "cmd", false, &pingsCmd)
	byAction := dialHello(t, s, "action", false, &pingsAction)
	idleID, cmdID, actionID := r.id(t, "idle"), r.id(t, "cmd"), r.id(t, "action")
	// Read the protected ones in the background, so that their pings, if
	// any, are seen; they end when the test closes them.
	var readers sync.WaitGroup
	for _, ws := range []*websocket.Conn{byCmd, byAction} {
		readers.Add(1)
		go func() { defer readers.Done(); _, _ = readUntilClose(ws, 30*time.Second) }()
	}
	defer readers.Wait()
	defer byCmd.Close()
	defer byAction.Close()

	subj, _ := bus.NewSubjects("")
	cmd := bus.Command{Version: bus.Version, Op: bus.OpProtect, Clients: []string{cmdID}, Flag: true}
	m, err := nc.Request(subj.Cmd(s.ID()), bus.AppendCommand(nil, &cmd), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep bus.Reply
	if err := bus.DecodeReply(m.Data, &rep); err != nil || rep.ErrorCode != "" {
		t.Fatalf("protect reply %+v, %v", rep, err)
	}
	if err := byAction.WriteMessage(websocket.TextMessage, []byte("protect")); err != nil {
		t.Fatal(err)
	}
	info := bus.Command{Version: bus.Version, Op: bus.OpClientInfo, Clients: []string{cmdID}, Fields: bus.FieldSystem}
	if m, err = nc.Request(subj.Cmd(s.ID()), bus.AppendCommand(nil, &info), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := bus.DecodeReply(m.Data, &rep); err != nil || rep.State == nil || !rep.State.Protected {
		t.Fatalf("client info after protect: %+v, %v", rep.State, err)
	}
	protectedAt := time.Now()
	waitFor(t, 5*time.Second, "the action applied", func() bool {
		c, _ := s.lookup(actionID)
		c.sh.mu.Lock()
		defer c.sh.mu.Unlock()
		return c.protected
	})
	pingedCmd, pingedAction := pingsCmd.Load(), pingsAction.Load()

	code, err := readUntilClose(idle, 5*time.Second)
	if err != nil || code != 1001 {
		t.Fatalf("idle client: close code %d, %v; want 1001", code, err)
	}
	if pingsIdle.Load() == 0 {
		t.Error("the idle client was never pinged")
	}
	waitFor(t, 5*time.Second, "the close event", func() bool { return r.closeReason(idleID) != "" })
	if got := r.closeReason(idleID); got != "idle_timeout" {
		t.Fatalf("close reason %q, want idle_timeout", got)
	}
	// Twice the idle timeout after protection the protected ones are still
	// open and were not pinged since.
	waitFor(t, 5*time.Second, "two idle timeouts", func() bool { return time.Since(protectedAt) > 600*time.Millisecond })
	for _, id := range []string{cmdID, actionID} {
		if c, err := s.lookup(id); err != nil || c.closing() {
			t.Errorf("protected client %s closed (%v)", id, err)
		}
	}
	// One ping may have been on its way when protection began; an
	// unprotected client would have had at least 5 by now.
	if pingsCmd.Load() > pingedCmd+1 || pingsAction.Load() > pingedAction+1 {
		t.Errorf("protected clients pinged: %d→%d, %d→%d", pingedCmd, pingsCmd.Load(), pingedAction, pingsAction.Load())
	}
	if n := s.Stats().Closes["idle_timeout"]; n != 1 {
		t.Errorf("idle closes = %d, want 1", n)
	}
}

// TestTCPPingData: a quiet TCP client gets ping_data framed like a message
// every interval; one that answers stays (2.5 idle timeouts), one that
// does not is closed after the idle timeout (its close event says
// idle_timeout).
func TestTCPPingData(t *testing.T) {
	s, r, _ := startWithWorker(t, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0",
		PingData: "ping", PingInterval: 100 * time.Millisecond, IdleTimeout: 600 * time.Millisecond}}})
	dial := func(name string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", s.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.Write([]byte("hello:" + name + "\n")); err != nil {
			t.Fatal(err)
		}
		return c, bufio.NewReader(c)
	}
	dialed := time.Now()
	quiet, quietR := dial("quiet")
	alive, aliveR := dial("alive")
	quietID, aliveID := r.id(t, "quiet"), r.id(t, "alive")
	start := time.Now()

	// The answering client: every ping gets a pong, for 3 idle timeouts.
	answered := make(chan error, 1)
	go func() {
		for n := 0; ; n++ {
			_ = alive.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := aliveR.ReadString('\n')
			if err != nil || line != "ping\n" {
				answered <- errors.Join(err, errors.New("alive client read "+line))
				return
			}
			if time.Since(start) > 1500*time.Millisecond {
				answered <- nil
				return
			}
			if _, err := alive.Write([]byte("pong\n")); err != nil {
				answered <- err
				return
			}
		}
	}()

	_ = quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
	pings := 0
	for {
		line, err := quietR.ReadString('\n')
		if err != nil {
			break // closed by the gateway
		}
		if line != "ping\n" {
			t.Fatalf("quiet client read %q", line)
		}
		pings++
	}
	if took := time.Since(dialed); pings < 1 || took < 600*time.Millisecond || took > 3*time.Second {
		t.Fatalf("quiet client: %d pings, closed after %v; want pings, then a close after ~600ms", pings, took)
	}
	waitFor(t, 5*time.Second, "the close event", func() bool { return r.closeReason(quietID) == "idle_timeout" })
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if c, err := s.lookup(aliveID); err != nil || c.closing() {
		t.Fatalf("answering client closed (%v)", err)
	}
}

// TestPingInterval: a client that never answers is pinged once per
// interval of quiet, not once per sweep.
func TestPingInterval(t *testing.T) {
	s, _, _ := startWithWorker(t, Config{Listeners: []ListenerConfig{wsListener(200*time.Millisecond, -1)}})
	var pings atomic.Int64
	ws := dialHello(t, s, "p", false, &pings)
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); _, _ = readUntilClose(ws, 10*time.Second) }()
	waitFor(t, 5*time.Second, "4 pings", func() bool { return pings.Load() >= 4 })
	elapsed := time.Since(start)
	n := pings.Load()
	_ = ws.Close()
	<-done
	if max := int64(elapsed/(200*time.Millisecond)) + 1; n > max || elapsed < 600*time.Millisecond {
		t.Fatalf("%d pings in %v; want at most one per 200ms", n, elapsed)
	}
}
