package gateway

import (
	"context"
	"log/slog"
	"testing"
	"time"

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
	for _, tc := range []struct {
		name    string
		workers map[string]announced
		unknown bool // an unannounced worker acked
		want    bool // skip close events
		wantWS  bool // skip WebSocket connect events
	}{
		{"nobody announced", nil, false, false, false},
		{"one without OnClose", map[string]announced{"a": {true, false, 10 * sec}}, false, true, false},
		{"one of two with OnClose", map[string]announced{"a": {true, true, 10 * sec}, "b": {false, true, 10 * sec}}, false, false, true},
		{"the one with OnClose expired", map[string]announced{"a": {true, false, 10 * sec}, "b": {false, false, sec}}, false, true, false},
		{"every one expired", map[string]announced{"a": {true, true, sec}}, false, false, false},
		{"an unannounced worker acked", map[string]announced{"a": {true, true, 10 * sec}}, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := &closeSkip{workers: map[string]announced{}, unannounced: tc.unknown}
			for id, w := range tc.workers {
				cs.workers[id] = w
			}
			cs.updateLocked(5 * sec)
			if got, gotWS := cs.skip.Load(), cs.skipWS.Load(); got != tc.want || gotWS != tc.wantWS {
				t.Errorf("skip = %v, skipWS = %v, want %v, %v", got, gotWS, tc.want, tc.wantWS)
			}
			if (tc.want || tc.wantWS) && cs.soonest.Load() != 10*sec {
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
	cs := &closeSkip{workers: map[string]announced{"a": {true, true, now + int64(50*time.Millisecond)}}}
	cs.updateLocked(now)
	if !cs.skipClose() || !cs.skipWSConnect() {
		t.Fatal("not skipping while the worker is live")
	}
	time.Sleep(60 * time.Millisecond)
	if cs.skipClose() || cs.skipWSConnect() {
		t.Error("still skipping after the worker expired")
	}
}
