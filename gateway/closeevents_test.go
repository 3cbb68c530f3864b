package gateway

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// TestCloseEventsLeftOut: a gateway whose only worker announced it has no
// OnClose sends no close event, and with no OnWebSocketConnect no
// WebSocket connect event (the client's connect event still goes); a
// worker with the handler gets its events as before.
func TestCloseEventsLeftOut(t *testing.T) {
	for _, tc := range []struct {
		name          string
		onClose, onWS bool
		// Batches sent after two clients connected and the first
		// closed, at least and at most.
		minBatches, maxBatches uint64
	}{
		{"neither handler", false, false, 2, 2},
		{"close handler", true, false, 3, 3},
		// A client's WebSocket connect event goes in its connect
		// event's batch when both were queued before it was published,
		// else in a batch of its own behind it.
		{"websocket connect handler", false, true, 2, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := testBus(t)
			s := startServer(t, nc, Config{Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
			h := worker.Handlers{OnConnect: func(*worker.Context) {}}
			closes := make(chan string, 4)
			paths := make(chan string, 4)
			if tc.onClose {
				h.OnClose = func(c *worker.Context) { closes <- c.ClientID() }
			}
			if tc.onWS {
				h.OnWebSocketConnect = func(_ *worker.Context, r *worker.Request) { paths <- r.Path }
			}
			// Started after the gateway: its hello reaches the gateway.
			w, err := worker.New(nc, nil, worker.Config{Logger: slog.New(slog.DiscardHandler)}, h)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = w.Stop(context.Background()) }()
			// The gateway stops first: its clients' close events (if
			// any are sent) find the worker.
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = s.Shutdown(ctx)
			}()
			waitFor(t, 5*time.Second, "the worker's announcement", func() bool {
				s.closeSkip.mu.Lock()
				defer s.closeSkip.mu.Unlock()
				return len(s.closeSkip.workers) == 1
			})
			if got := s.closeSkip.skip.Load(); got == tc.onClose {
				t.Fatalf("skipping close events: %v, want %v", got, !tc.onClose)
			}
			if got := s.closeSkip.skipWS.Load(); got == tc.onWS {
				t.Fatalf("skipping WebSocket connect events: %v, want %v", got, !tc.onWS)
			}
			c := mustWS(t, s, "127.0.0.1")
			waitFor(t, 5*time.Second, "the connect event", func() bool { return w.Stats().Connects == 1 })
			_ = c.Close()
			waitFor(t, 5*time.Second, "the close", func() bool { return s.Stats().Connections == 0 })
			// A second client's connect, handled after the first
			// client's close event would have been.
			mustWS(t, s, "127.0.0.1")
			waitFor(t, 5*time.Second, "the second connect", func() bool { return w.Stats().Connects == 2 && s.inFlight() == 0 })
			if tc.onClose {
				select {
				case <-closes:
				case <-time.After(5 * time.Second):
					t.Fatal("OnClose did not run")
				}
			} else if n := w.Stats().Closes; n != 0 {
				t.Errorf("the worker got %d close events, want none", n)
			}
			if tc.onWS {
				if p := <-paths; p != "/" {
					t.Errorf("OnWebSocketConnect saw path %q, want /", p)
				}
			} else if n := w.Stats().WebSocketConnects; n != 0 {
				t.Errorf("the worker got %d WebSocket connect events, want none", n)
			}
			if n := s.Stats().EventsSent; n < tc.minBatches || n > tc.maxBatches {
				t.Errorf("%d batches sent, want %d to %d", n, tc.minBatches, tc.maxBatches)
			}
		})
	}
}

// TestCloseEventsUnannouncedWorker: an ack from a worker that never
// announced itself (one written against the bus protocol alone) turns
// skipping off, though every announcement said NoClose: that worker gets
// the close event.
func TestCloseEventsUnannouncedWorker(t *testing.T) {
	nc := testBus(t)
	sw := startScriptedWorker(t, nc, func(delivered) answer { return answerAck })
	s := redeliveryServer(t, nc, Config{})
	subj, _ := bus.NewSubjects("")
	info := bus.AppendWorkerInfo(nil, &bus.WorkerInfo{ID: "announced", Kind: "event", Hello: true, IntervalMs: 2000, NoClose: true})
	if err := nc.Publish(subj.WorkerAnnounce(), info); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "skipping on", s.closeSkip.skip.Load)
	c := dialLine(t, s)
	waitFor(t, 5*time.Second, "skipping off at the scripted worker's ack", func() bool { return !s.closeSkip.skip.Load() })
	_ = c.c.Close()
	waitFor(t, 5*time.Second, "the close event at the scripted worker", func() bool { return sw.closeReason() != "" })
}

// TestCloseSkipTable: what the announcements add up to.
func TestCloseSkipTable(t *testing.T) {
	const sec = int64(time.Second)
	w := func(noClose, noWS, noConn bool, expires int64) announced {
		return announced{noClose: noClose, noWS: noWS, noConn: noConn, expires: expires}
	}
	for _, tc := range []struct {
		name     string
		workers  map[string]announced
		unknown  bool // an unannounced worker acked
		want     bool // skip close events
		wantWS   bool // skip WebSocket connect events
		wantConn bool // skip connect events
	}{
		{"nobody announced", nil, false, false, false, false},
		{"one without OnClose", map[string]announced{"a": w(true, false, false, 10*sec)}, false, true, false, false},
		{"one of two with OnClose", map[string]announced{"a": w(true, true, true, 10*sec), "b": w(false, true, true, 10*sec)}, false, false, true, true},
		{"one of two with OnConnect", map[string]announced{"a": w(true, true, true, 10*sec), "b": w(true, true, false, 10*sec)}, false, true, true, false},
		{"the one with OnClose expired", map[string]announced{"a": w(true, false, true, 10*sec), "b": w(false, false, false, sec)}, false, true, false, true},
		{"every one expired", map[string]announced{"a": w(true, true, true, sec)}, false, false, false, false},
		{"an unannounced worker acked", map[string]announced{"a": w(true, true, true, 10*sec)}, true, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := &closeSkip{workers: map[string]announced{}, unannounced: tc.unknown}
			for id, w := range tc.workers {
				cs.workers[id] = w
			}
			cs.updateLocked(5 * sec)
			if got, gotWS, gotConn := cs.skip.Load(), cs.skipWS.Load(), cs.skipConn.Load(); got != tc.want || gotWS != tc.wantWS || gotConn != tc.wantConn {
				t.Errorf("skip = %v, skipWS = %v, skipConn = %v, want %v, %v, %v", got, gotWS, gotConn, tc.want, tc.wantWS, tc.wantConn)
			}
			if (tc.want || tc.wantWS || tc.wantConn) && cs.soonest.Load() != 10*sec {
				t.Errorf("soonest expiry %d, want %d", cs.soonest.Load(), 10*sec)
			}
		})
	}
}

// TestCloseSkipExpires: the last worker's announcement expires without a
// goodbye (the process was killed): close and WebSocket connect events
// are sent again from then on, without another announcement.
func TestCloseSkipExpires(t *testing.T) {
	now := time.Now().UnixNano()
	cs := &closeSkip{workers: map[string]announced{"a": {noClose: true, noWS: true, noConn: true, expires: now + int64(50*time.Millisecond)}}}
	cs.updateLocked(now)
	if !cs.skipClose() || !cs.skipWSConnect() || !cs.skipConnect() {
		t.Fatal("not skipping while the worker is live")
	}
	time.Sleep(60 * time.Millisecond)
	if cs.skipClose() || cs.skipWSConnect() || cs.skipConnect() {
		t.Error("still skipping after the worker expired")
	}
}

// TestConnectEventsLeftOut: with only an echo worker (no OnConnect, no
// OnClose, no OnWebSocketConnect) a gateway publishes nothing for clients
// that connect and stay idle, and a client's message is still handled; a
// worker with OnConnect that starts later gets the connect events of the
// clients after it.
func TestConnectEventsLeftOut(t *testing.T) {
	nc := testBus(t)
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	start := func(h worker.Handlers) *worker.Worker {
		w, err := worker.New(nc, nil, worker.Config{Logger: slog.New(slog.DiscardHandler)}, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Stop(context.Background()) })
		return w
	}
	// The gateway stops first (cleanups run last in, first out).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	echoW := start(worker.Handlers{OnMessage: func(c *worker.Context, m []byte) { c.Send(m) }})
	waitFor(t, 5*time.Second, "connect events left out", s.closeSkip.skipConn.Load)
	idle := []*websocket.Conn{mustWS(t, s, "127.0.0.1"), mustWS(t, s, "127.0.0.1")}
	waitFor(t, 5*time.Second, "two clients", func() bool { return s.Stats().Connections == 2 })
	time.Sleep(100 * time.Millisecond) // an event would be on the bus by now
	if st := s.Stats(); st.EventsSent != 0 || echoW.Stats().Batches != 0 {
		t.Fatalf("%d batches sent, %d taken for idle clients, want none", st.EventsSent, echoW.Stats().Batches)
	}
	echo(t, idle[0], "still served")
	if n := echoW.Stats().Connects; n != 0 {
		t.Errorf("the echo worker got %d connect events, want none", n)
	}

	connects := make(chan string, 4)
	start(worker.Handlers{OnConnect: func(c *worker.Context) { connects <- c.ClientID() }})
	waitFor(t, 5*time.Second, "connect events sent again", func() bool { return !s.closeSkip.skipConn.Load() })
	// Each connect event goes to one worker of the queue group, either.
	for i := 0; ; i++ {
		mustWS(t, s, "127.0.0.1")
		select {
		case <-connects:
			return
		case <-time.After(500 * time.Millisecond):
		}
		if i == 20 {
			t.Fatalf("the worker with OnConnect got no connect event of 20 clients; %d batches sent", s.Stats().EventsSent)
		}
	}
}
