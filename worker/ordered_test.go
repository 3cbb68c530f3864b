package worker_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// TestAPICallFlushesActions: an API call made by a handler is preceded on
// the bus by a progress Ack carrying the actions queued so far, sent as a
// request that the worker waits to see answered; the final Ack carries
// only the later actions; a call with nothing queued, and a call after
// the handler returned, flush nothing.
func TestAPICallFlushesActions(t *testing.T) {
	e := newEnv(t)
	const gwID = "0123456789"
	client := gwID + "0000000001"
	// What the gateway gets, in the order it gets it: acks and commands.
	seen := make(chan *nats.Msg, 64)
	for _, subject := range []string{e.inbox, e.subj.Cmd(gwID)} {
		if _, err := e.gw.ChanSubscribe(subject, seen); err != nil {
			t.Fatal(err)
		}
	}
	nc := e.conn("worker")
	a, err := api.New(nc, api.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	kept := make(chan api.API, 1)
	w, err := worker.New(nc, a, worker.Config{Logger: discardLogger()}, worker.Handlers{
		OnMessage: func(c *worker.Context, msg []byte) {
			ctx := context.Background()
			c.Send([]byte("a"))
			c.JoinGroup("g")
			start := time.Now()
			if err := c.API().SendToClient(ctx, c.ClientID(), []byte("b")); err != nil {
				t.Error(err)
			}
			if time.Since(start) > 4*time.Second {
				t.Errorf("the flush was not answered: %v", time.Since(start))
			}
			if err := c.API().SendToClient(ctx, c.ClientID(), []byte("c")); err != nil {
				t.Error(err)
			}
			c.Send([]byte("d"))
			kept <- c.API()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	e.publish(batch(7, client, msgEvent("go")))

	next := func() *nats.Msg {
		t.Helper()
		for {
			select {
			case m := <-seen:
				if m.Subject == e.inbox {
					var ack bus.Ack
					if err := bus.DecodeAck(m.Data, &ack); err != nil {
						t.Fatal(err)
					}
					if ack.Progress && len(ack.Actions) == 0 {
						continue // the monitor's
					}
				}
				return m
			case <-time.After(10 * time.Second):
				t.Fatal("nothing more reached the gateway")
				return nil
			}
		}
	}
	ackOf := func(m *nats.Msg) bus.Ack {
		t.Helper()
		var ack bus.Ack
		if m.Subject != e.inbox {
			t.Fatalf("got %s, want an ack", m.Subject)
		}
		if err := bus.DecodeAck(m.Data, &ack); err != nil {
			t.Fatal(err)
		}
		return ack
	}
	sendOf := func(m *nats.Msg) string {
		t.Helper()
		var cmd bus.Command
		if m.Subject != e.subj.Cmd(gwID) {
			t.Fatalf("got %s, want a command", m.Subject)
		}
		if err := bus.DecodeCommand(m.Data, &cmd); err != nil {
			t.Fatal(err)
		}
		if cmd.Op != bus.OpSendToClient || !reflect.DeepEqual(cmd.Clients, []string{client}) {
			t.Fatalf("command %v to %v", cmd.Op, cmd.Clients)
		}
		return string(cmd.Data)
	}

	m := next()
	flush := ackOf(m)
	want := []bus.Action{{Type: bus.ActionSend, Data: []byte("a")}, {Type: bus.ActionJoinGroup, Arg: "g"}}
	if !flush.Progress || flush.Delivery != 7 || !reflect.DeepEqual(flush.Actions, want) || m.Reply == "" {
		t.Fatalf("flush: %+v (reply %q), want a progress request with %+v", flush, m.Reply, want)
	}
	if err := m.Respond(nil); err != nil {
		t.Fatal(err)
	}
	if got := sendOf(next()); got != "b" {
		t.Errorf("first call sent %q", got)
	}
	if got := sendOf(next()); got != "c" {
		t.Errorf("second call sent %q", got)
	}
	final := ackOf(next())
	if want := []bus.Action{{Type: bus.ActionSend, Data: []byte("d")}}; final.Progress || !reflect.DeepEqual(final.Actions, want) {
		t.Errorf("final ack %+v, want %+v", final, want)
	}
	// Kept after the handler: the worker's API, no flush.
	if err := (<-kept).SendToClient(context.Background(), client, []byte("e")); err != nil {
		t.Fatal(err)
	}
	if got := sendOf(next()); got != "e" {
		t.Errorf("late call sent %q", got)
	}
}
