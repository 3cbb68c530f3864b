package worker

import (
	"fmt"
	"testing"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// allocCeilings are the most heap allocations one event batch may cost on
// the worker's side (decode the EventBatch, run the handlers, encode the
// Ack: runBatch), or one multi message of 16 clients' batches (runMulti),
// measured with testing.AllocsPerRun. Round 5 (issue 19) cut them from
// 16 / 39 / 25 to 3 / 26 / 11 (interned strings, a job with room for a
// typical batch); the multi message costs 2.4 per event. They are today's
// figures plus a small margin: a change that adds an allocation per event
// fails here, and must either be cut or raise the ceiling on purpose
// (docs/benchmarks.md, "Regression benchmarks").
var allocCeilings = []struct {
	name    string
	events  int
	h       Handlers
	clients int     // > 0: a multi message (EventBatches) of this many clients' batches
	ceiling float64 // allocations per batch (per multi message)
}{
	{"echo", 1, Handlers{OnMessage: func(c *Context, m []byte) { c.Send(m) }}, 0, 4},
	{"echo-x16", 16, Handlers{OnMessage: func(c *Context, m []byte) { c.Send(m) }}, 0, 28},
	{"connect-bind-join", 1, Handlers{OnConnect: func(c *Context) {
		c.BindUID("user-2")
		c.JoinGroup("room-8")
		_ = c.UpdateSession(api.Session{"joined": true})
	}}, 0, 13},
	{"echo-multi-x16", 1, Handlers{OnMessage: func(c *Context, m []byte) { c.Send(m) }}, 16, 42},
}

// TestBatchAllocs fails when the worker's event path allocates more per
// batch than its ceiling; it logs the figures per event.
func TestBatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations")
	}
	state := bus.ClientState{
		RemoteIP: "203.0.113.7", RemotePort: 51000, UID: "user-1", Groups: []string{"lobby", "room-7"},
		Session: []byte(`{"name":"alice","level":3}`), Listener: "ws", Protocol: "ws",
		ConnectedUnixMs: 1_700_000_000_000, Gateway: "0a1b2c3d4e",
	}
	for _, tc := range allocCeilings {
		t.Run(tc.name, func(t *testing.T) {
			w := quietWorker(t, tc.h)
			ev := bus.Event{Type: bus.EventMessage, Data: make([]byte, 64)}
			if tc.h.OnConnect != nil {
				ev = bus.Event{Type: bus.EventConnect}
			}
			events := make([]bus.Event, tc.events)
			for i := range events {
				events[i] = ev
			}
			batch := bus.EventBatch{
				Version: bus.Version, Gateway: "0a1b2c3d4e", Delivery: 1, Client: "0a1b2c3d4e0000000001",
				State: state, Events: events, Attempt: 1,
			}
			data := bus.AppendEventBatch(nil, &batch)
			if tc.clients > 0 {
				// One multi message of tc.clients clients' batches.
				var m bus.EventBatches
				for i := range tc.clients {
					b := batch
					b.Delivery = uint64(i + 1)
					b.Client = fmt.Sprintf("0a1b2c3d4e%010x", i+1)
					m.Batches = append(m.Batches, b)
				}
				data = bus.AppendEventBatches(nil, &m)
			}
			var ack []byte
			run := func() {
				var err error
				if tc.clients > 0 {
					ack, err = runMulti(w, data, ack)
				} else {
					ack, err = runBatch(w, data, ack)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			run() // warm the pools
			got := testing.AllocsPerRun(200, run)
			per := float64(tc.events * max(tc.clients, 1))
			t.Logf("%s: %.1f allocations per message, %.2f per event", tc.name, got, got/per)
			if got > tc.ceiling {
				t.Errorf("%s: %.1f allocations per batch, ceiling %.1f: the event path allocates more than it did", tc.name, got, tc.ceiling)
			}
		})
	}
}
