package worker

import (
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// These tests drive the batch path (decode, dispatch, encode the Ack)
// without a bus.

func quietWorker(tb testing.TB, h Handlers) *Worker {
	tb.Helper()
	w, err := newWorker(nil, Config{Logger: slog.New(slog.DiscardHandler)}, h)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.cancel)
	return w
}

// runBatch takes data as the subscription callback does, decodes and runs
// it as a pool goroutine does, and returns its encoded final Ack.
func runBatch(w *Worker, data, ack []byte) ([]byte, error) {
	j, err := newJob(&nats.Msg{Subject: "gw.events", Reply: "gw.gw.g1.ack", Data: data}, time.Now())
	if err != nil {
		return ack, err
	}
	if err := j.open(); err != nil {
		return ack, err
	}
	w.dispatch(j)
	return j.appendAck(ack[:0], w.cfg.ID), nil
}

// runMulti decodes data, an EventBatches message, as the multi
// subscription's callback does, runs its batches and returns the encoded
// Acks message.
func runMulti(w *Worker, data, ack []byte) ([]byte, error) {
	jobs, err := newMultiJobs(&nats.Msg{Subject: "gw.events.multi", Reply: "gw.gw.g1.ack.m1", Data: data}, time.Now())
	if err != nil {
		return ack, err
	}
	ack = ack[:0]
	for _, j := range jobs {
		if err := j.open(); err != nil {
			return ack, err
		}
		w.dispatch(j)
		ack = j.appendAck(ack, w.cfg.ID)
	}
	return ack, nil
}

func BenchmarkBatch(b *testing.B) {
	state := bus.ClientState{
		RemoteIP: "203.0.113.7", RemotePort: 51000, UID: "user-1", Groups: []string{"lobby", "room-7"},
		Session: []byte(`{"name":"alice","level":3}`), Listener: "ws", Protocol: "ws",
		ConnectedUnixMs: 1_700_000_000_000, Gateway: "0a1b2c3d4e",
	}
	msg := bus.Event{Type: bus.EventMessage, Data: make([]byte, 64)}
	cases := []struct {
		name   string
		events []bus.Event
		h      Handlers
	}{
		{"echo", []bus.Event{msg}, Handlers{OnMessage: func(c *Context, m []byte) { c.Send(m) }}},
		{"echo-x4", []bus.Event{msg, msg, msg, msg}, Handlers{OnMessage: func(c *Context, m []byte) { c.Send(m) }}},
		{"connect-bind-join", []bus.Event{{Type: bus.EventConnect}}, Handlers{OnConnect: func(c *Context) {
			c.BindUID("user-2")
			c.JoinGroup("room-8")
			_ = c.UpdateSession(api.Session{"joined": true})
		}}},
		{"read-session", []bus.Event{msg}, Handlers{OnMessage: func(c *Context, m []byte) {
			if c.Session()["name"] != "alice" {
				panic("session")
			}
		}}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			w := quietWorker(b, bc.h)
			data := bus.AppendEventBatch(nil, &bus.EventBatch{
				Version: bus.Version, Gateway: "0a1b2c3d4e", Delivery: 1, Client: "0a1b2c3d4e0000000001",
				State: state, Events: bc.events, Attempt: 1,
			})
			var ack []byte
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if ack, err = runBatch(w, data, ack); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// model is what a fuzzed handler expects the Context's view to be.
type model struct {
	uid     string
	groups  map[string]bool
	session api.Session
	actions int
}

// apply runs the operations that script encodes on c and on m, and reports
// where the Context's view departs from the model.
func (m *model) apply(c *Context, script []byte) error {
	name := func(i int) string {
		if i+1 < len(script) {
			return fmt.Sprintf("g%d", script[i+1]%4)
		}
		return "g"
	}
	for i, op := range script {
		n := name(i)
		switch op % 8 {
		case 0:
			c.BindUID(n)
			m.uid = n
		case 1:
			c.UnbindUID()
			m.uid = ""
		case 2:
			c.JoinGroup(n)
			m.groups[n] = true
		case 3:
			c.LeaveGroup(n)
			delete(m.groups, n)
		case 4:
			if err := c.UpdateSession(api.Session{n: float64(i)}); err != nil {
				return err
			}
			m.session[n] = float64(i)
		case 5:
			if err := c.SetSession(api.Session{n: n}); err != nil {
				return err
			}
			m.session = api.Session{n: n}
		case 6:
			c.DeleteSession()
			m.session = api.Session{}
		case 7:
			c.Send(script[i:])
		}
		m.actions++
		if c.UID() != m.uid {
			return fmt.Errorf("op %d: uid %q, want %q", i, c.UID(), m.uid)
		}
		want := make([]string, 0, len(m.groups))
		for g := range m.groups {
			want = append(want, g)
		}
		slices.Sort(want)
		if got := c.Groups(); !slices.Equal(got, want) {
			return fmt.Errorf("op %d: groups %q, want %q", i, got, want)
		}
		if got := c.Session(); !reflect.DeepEqual(got, m.session) {
			return fmt.Errorf("op %d: session %v, want %v", i, got, m.session)
		}
	}
	return nil
}

// FuzzBatch feeds arbitrary bytes through the whole batch path. Beyond the
// bus decoder's own fuzzing, it checks what the worker adds: the view kept
// by the Context (uid, groups normalized from any state, sessions decoded
// from any gateway JSON and merged) against a model, the HTTP request
// conversion, the handler's ownership of msg, and that the final Ack
// encodes the delivery and every queued action.
func FuzzBatch(f *testing.F) {
	seed := func(b *bus.EventBatch) { f.Add(bus.AppendEventBatch(nil, b)) }
	seed(&bus.EventBatch{Version: 1, Delivery: 1, Client: "c", Events: []bus.Event{{Type: bus.EventConnect}}})
	seed(&bus.EventBatch{
		Version: 1, Delivery: 2, Client: "c", Attempt: 3,
		State: bus.ClientState{UID: "u", Groups: []string{"g2", "g0", "g2"}, Session: []byte(`{"a":1,"g1":"x"}`)},
		Events: []bus.Event{
			{Type: bus.EventWebSocketConnect, Request: &bus.HTTPRequest{
				Method: "GET", Path: "/ws", Query: "a=1&b=%zz;c", Host: "h",
				Headers: []bus.Header{{Name: "Cookie", Value: "a=b; c=\"d\""}, {Name: "x y", Value: "\x00"}},
			}},
			{Type: bus.EventMessage, Data: []byte{0, 2, 4, 6, 7, 3, 5, 1}},
			{Type: bus.EventMessage, Data: []byte{10, 11, 12, 13, 14, 15}, Binary: true},
			{Type: bus.EventClose, CloseReason: "bye"},
			{Type: 42},
		},
	})
	seed(&bus.EventBatch{Delivery: 3, State: bus.ClientState{Session: []byte("null")},
		Events: []bus.Event{{Type: bus.EventMessage, Data: []byte{4, 4}}}})
	f.Add([]byte{0x32, 0x02, 0x08, 0x03})

	f.Fuzz(func(t *testing.T, data []byte) {
		var m *model
		var failure error
		fail := func(err error) {
			if err != nil && failure == nil {
				failure = err
			}
		}
		w := quietWorker(t, Handlers{
			OnConnect: func(c *Context) { fail(m.apply(c, []byte(c.ClientID()))) },
			OnWebSocketConnect: func(c *Context, r *Request) {
				_ = r.Cookies()
				if r.Query == nil || r.Header == nil {
					fail(fmt.Errorf("nil query or header"))
				}
				c.Reject(int(len(r.Path)), r.Host)
				m.actions++
			},
			OnMessage: func(c *Context, msg []byte) {
				if cap(msg) != len(msg) {
					fail(fmt.Errorf("msg capacity %d > length %d", cap(msg), len(msg)))
				}
				fail(m.apply(c, msg))
			},
			OnClose: func(c *Context) {
				_ = c.Info()
				_ = c.CloseReason()
				c.Close()
				m.actions++
			},
		})
		// The view each batch starts from, as the handlers will see it.
		j, err := newJob(&nats.Msg{Reply: "r", Data: data}, time.Now())
		if err != nil || j.open() != nil {
			return
		}
		m = &model{uid: j.batch.State.UID, groups: map[string]bool{}}
		for _, g := range j.batch.State.Groups {
			m.groups[g] = true
		}
		m.session = (&Context{w: w, j: &job{session: j.batch.State.Session}}).Session()

		ackBytes, err := runBatch(w, data, nil)
		if err != nil {
			t.Fatalf("decoded once, not twice: %v", err)
		}
		if failure != nil {
			t.Fatal(failure)
		}
		if p := w.stats.panics.Load(); p != 0 {
			t.Fatalf("%d handler panics", p)
		}
		var ack bus.Ack
		if err := bus.DecodeAck(ackBytes, &ack); err != nil {
			t.Fatalf("ack does not decode: %v", err)
		}
		if ack.Delivery != j.batch.Delivery || ack.Progress || len(ack.Actions) != m.actions {
			t.Fatalf("ack delivery %d progress %v actions %d, want %d, false, %d",
				ack.Delivery, ack.Progress, len(ack.Actions), j.batch.Delivery, m.actions)
		}
	})
}

// BenchmarkMulti runs a multi message of 64 echo batches through the
// worker's batch path (decode, handlers, the Acks message); ns/op is per
// message.
func BenchmarkMulti(b *testing.B) {
	w := quietWorker(b, Handlers{OnMessage: func(c *Context, m []byte) { c.Send(m) }})
	var m bus.EventBatches
	for i := range 64 {
		m.Batches = append(m.Batches, bus.EventBatch{
			Version: bus.Version, Gateway: "0a1b2c3d4e", Delivery: uint64(i + 1), Client: fmt.Sprintf("0a1b2c3d4e%010x", i+1),
			State: bus.ClientState{RemoteIP: "127.0.0.1", RemotePort: 50000 + uint32(i), Listener: "ws", Protocol: "ws",
				ConnectedUnixMs: 1_700_000_000_000, Gateway: "0a1b2c3d4e"},
			Events: []bus.Event{{Type: bus.EventMessage, Data: make([]byte, 64), TimeUnixMs: 1_700_000_000_000}}, Attempt: 1,
		})
	}
	data := bus.AppendEventBatches(nil, &m)
	var ack []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var err error
		if ack, err = runMulti(w, data, ack); err != nil {
			b.Fatal(err)
		}
	}
}
