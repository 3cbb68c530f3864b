package worker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// TestIdleWorkerHoldsNothing: after a wave of connects (each bound, in a
// group, welcomed) and no more traffic, the worker keeps nothing for the
// clients: no batch in hand, no pool goroutine, and (ReleaseMemory) the
// memory of the wave returned once; the next batch is served again.
func TestIdleWorkerHoldsNothing(t *testing.T) {
	e := newEnv(t)
	w, _ := e.start(worker.Config{ProgressInterval: 20 * time.Millisecond, ReleaseMemory: true}, worker.Handlers{
		OnConnect: func(c *worker.Context) {
			c.BindUID("u-" + c.ClientID())
			c.JoinGroup("g")
			c.Send([]byte("welcome"))
		},
	})
	const clients = 2000
	for i := range clients {
		b := batch(uint64(i+1), fmt.Sprintf("c%d", i), bus.Event{Type: bus.EventConnect})
		if err := e.gw.PublishMsg(&nats.Msg{Subject: e.subj.Events(), Reply: e.inbox, Data: bus.AppendEventBatch(nil, b)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.gw.Flush(); err != nil {
		t.Fatal(err)
	}
	for range clients {
		e.final()
	}
	if st := w.Stats(); st.Pool == 0 || st.Dropped != 0 {
		t.Fatalf("right after the wave: pool %d (want > 0), dropped %d", st.Pool, st.Dropped)
	}
	waitFor(t, 5*time.Second, "an empty pool and one release", func() bool {
		st := w.Stats()
		return st.Pool == 0 && st.Busy == 0 && st.Waiting == 0 && st.MemoryReleases == 1
	})
	e.publish(batch(clients+1, "late", bus.Event{Type: bus.EventConnect}))
	if a := e.final(); a.Delivery != clients+1 || len(a.Actions) != 3 {
		t.Fatalf("late batch: ack %+v", a)
	}
}
