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
// OnClose sends no close event (the client's connect event still goes);
// with an OnClose, or with acks from a worker that never announced
// itself, every close event goes out as before.
func TestCloseEventsLeftOut(t *testing.T) {
	for _, tc := range []struct {
		name      string
		onClose   bool
		wantClose bool
	}{
		{"no close handler", false, false},
		{"close handler", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := testBus(t)
			s := redeliveryServer(t, nc, Config{})
			h := worker.Handlers{OnConnect: func(*worker.Context) {}}
			closes := make(chan string, 4)
			if tc.onClose {
				h.OnClose = func(c *worker.Context) { closes <- c.ClientID() }
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
			waitFor(t, 5*time.Second, "the worker's announcement", func() bool {
				s.closeSkip.mu.Lock()
				defer s.closeSkip.mu.Unlock()
				return len(s.closeSkip.workers) == 1
			})
			if got := s.closeSkip.skip.Load(); got == tc.wantClose {
				t.Fatalf("skipping close events: %v, want %v", got, !tc.wantClose)
			}
			c := dialLine(t, s)
			waitFor(t, 5*time.Second, "the connect event", func() bool { return w.Stats().Connects == 1 })
			_ = c.c.Close()
			waitFor(t, 5*time.Second, "the close", func() bool { return s.Stats().Connections == 0 })
			// A second client's connect, handled after the first
			// client's close event would have been.
			dialLine(t, s)
			waitFor(t, 5*time.Second, "the second connect", func() bool { return w.Stats().Connects == 2 && s.inFlight() == 0 })
			if tc.wantClose {
				select {
				case <-closes:
				case <-time.After(5 * time.Second):
					t.Fatal("OnClose did not run")
				}
				return
			}
			if n := w.Stats().Closes; n != 0 {
				t.Errorf("the worker got %d close events, want none", n)
			}
			if n := s.Stats().EventsSent; n != 2 {
				t.Errorf("%d batches sent, want 2 (the connects)", n)
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
		want    bool
	}{
		{"nobody announced", nil, false, false},
		{"one without OnClose", map[string]announced{"a": {true, 10 * sec}}, false, true},
		{"one of two with OnClose", map[string]announced{"a": {true, 10 * sec}, "b": {false, 10 * sec}}, false, false},
		{"the one with OnClose expired", map[string]announced{"a": {true, 10 * sec}, "b": {false, sec}}, false, true},
		{"every one expired", map[string]announced{"a": {true, sec}}, false, false},
		{"an unannounced worker acked", map[string]announced{"a": {true, 10 * sec}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := &closeSkip{workers: map[string]announced{}, unannounced: tc.unknown}
			for id, w := range tc.workers {
				cs.workers[id] = w
			}
			cs.updateLocked(5 * sec)
			if got := cs.skip.Load(); got != tc.want {
				t.Errorf("skip = %v, want %v", got, tc.want)
			}
		})
	}
}
