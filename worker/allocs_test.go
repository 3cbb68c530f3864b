package worker

import (
	"testing"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// allocCeilings are the most heap allocations one event batch may cost on
// the worker's side (decode the EventBatch, run the handlers, encode the
// Ack: runBatch), measured with testing.AllocsPerRun. They are today's
// figures plus a small margin: a change that adds an allocation per event
// fails here, and must either be cut or raise the ceiling on purpose
// (docs/benchmarks.md, "Regression benchmarks").
var allocCeilings = []struct {
	name    string
	events  int
	h       Handlers
	ceiling float64 // allocations per batch
}{
	{"echo", 1, Handlers{OnMessage: func(c *Context, m []byte) { c.Send(m) }}, 16},
	{"echo-x16", 16, Handlers{OnMessage: func(c *Context, m []byte) { c.Send(m) }}, 39},
	{"connect-bind-join", 1, Handlers{OnConnect: func(c *Context) {
		c.BindUID("user-2")
		c.JoinGroup("room-8")
		_ = c.UpdateSession(api.Session{"joined": true})
	}}, 25},
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
			data := bus.AppendEventBatch(nil, &bus.EventBatch{
				Version: bus.Version, Gateway: "0a1b2c3d4e", Delivery: 1, Client: "0a1b2c3d4e0000000001",
				State: state, Events: events, Attempt: 1,
			})
			var ack []byte
			run := func() {
				var err error
				if ack, err = runBatch(w, data, ack); err != nil {
					t.Fatal(err)
				}
			}
			run() // warm the pools
			got := testing.AllocsPerRun(200, run)
			t.Logf("%s: %.1f allocations per batch, %.2f per event", tc.name, got, got/float64(tc.events))
			if got > tc.ceiling {
				t.Errorf("%s: %.1f allocations per batch, ceiling %.1f: the event path allocates more than it did", tc.name, got, tc.ceiling)
			}
		})
	}
}
