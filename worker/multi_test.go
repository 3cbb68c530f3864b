package worker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// publishMulti sends the batches as one EventBatches message on the multi
// subject, as a gateway does when several clients' batches are ready.
func (e *env) publishMulti(batches ...*bus.EventBatch) {
	e.t.Helper()
	var m bus.EventBatches
	for _, b := range batches {
		m.Batches = append(m.Batches, *b)
	}
	if err := e.gw.PublishMsg(&nats.Msg{Subject: e.subj.EventsMulti(), Reply: e.inbox, Data: bus.AppendEventBatches(nil, &m)}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.gw.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

// nextAcks returns the next Acks message on the gateway's inbox, without
// its progress acks.
func (e *env) nextAcks() []bus.Ack {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := e.acks.NextMsg(time.Until(deadline))
		if err != nil {
			e.t.Fatalf("no acks: %v", err)
		}
		var a bus.Acks
		if err := bus.DecodeAcks(m.Data, &a); err != nil {
			e.t.Fatalf("bad acks: %v", err)
		}
		var final []bus.Ack
		for _, ack := range a.Acks {
			if !ack.Progress {
				final = append(final, ack)
			}
		}
		if len(final) > 0 {
			return final
		}
	}
}

func echoHandlers() worker.Handlers {
	return worker.Handlers{OnMessage: func(c *worker.Context, m []byte) { c.Send(m) }}
}

// TestMultiMessageOneAcks: the 16 batches of a multi message are run and
// answered with one Acks message, in order, each with its own actions.
func TestMultiMessageOneAcks(t *testing.T) {
	e := newEnv(t)
	w, nc := e.start(worker.Config{}, echoHandlers())
	const n = 16
	var batches []*bus.EventBatch
	for i := range n {
		batches = append(batches, batch(uint64(i+1), fmt.Sprintf("c%d", i), msgEvent(fmt.Sprintf("m%d", i))))
	}
	e.publishMulti(batches...)
	acks := e.nextAcks()
	if len(acks) != n {
		t.Fatalf("one Acks message of %d acks, want %d", len(acks), n)
	}
	for i, a := range acks {
		if a.Delivery != uint64(i+1) || len(a.Actions) != 1 || string(a.Actions[0].Data) != fmt.Sprintf("m%d", i) {
			t.Errorf("ack %d: %+v", i, a)
		}
	}
	e.quietAcks(nc)
	st := w.Stats()
	if st.MultiMessages != 1 || st.AckMessages != 1 || st.Acked != n || st.Batches != n {
		t.Errorf("stats: %d multi messages, %d ack messages, %d acked, %d batches; want 1, 1, %d, %d",
			st.MultiMessages, st.AckMessages, st.Acked, st.Batches, n, n)
	}
}

// TestMultiSlowHandlerSpills: a handler that blocks holds up the other
// clients of its multi message for about a millisecond only: the batches
// behind it go back to the pool and are answered while it still runs.
func TestMultiSlowHandlerSpills(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	var ran atomic.Int32
	w, _ := e.start(worker.Config{Concurrency: 4}, worker.Handlers{OnMessage: func(c *worker.Context, m []byte) {
		if string(m) == "slow" {
			<-release
		}
		ran.Add(1)
		c.Send(m)
	}})
	const n = 8
	batches := []*bus.EventBatch{batch(1, "c0", msgEvent("slow"))}
	for i := 1; i < n; i++ {
		batches = append(batches, batch(uint64(i+1), fmt.Sprintf("c%d", i), msgEvent("fast")))
	}
	e.publishMulti(batches...)
	got := map[uint64]bool{}
	for len(got) < n-1 {
		for _, a := range e.nextAcks() {
			if a.Delivery == 1 {
				t.Fatal("the slow batch was answered before it was released")
			}
			got[a.Delivery] = true
		}
	}
	close(release)
	if acks := e.nextAcks(); len(acks) != 1 || acks[0].Delivery != 1 {
		t.Fatalf("after release: %+v, want the ack of delivery 1", acks)
	}
	// All 8 when the timer fired before the slow one started.
	if st := w.Stats(); st.Spilled < n-1 || st.Spilled > n {
		t.Errorf("%d batches spilled, want %d or %d", st.Spilled, n-1, n)
	}
}

// TestMultiStopAbandonsNacked: batches of a multi message still in hand
// when Stop's deadline passes are nacked one by one, in Acks messages.
func TestMultiStopAbandonsNacked(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	defer close(release)
	w, _ := e.start(worker.Config{Concurrency: 1}, worker.Handlers{OnMessage: func(c *worker.Context, m []byte) { <-release }})
	e.publishMulti(batch(1, "c0", msgEvent("a")), batch(2, "c1", msgEvent("b")))
	waitFor(t, 5*time.Second, "both in hand", func() bool { st := w.Stats(); return st.Busy == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.Stop(ctx); err == nil {
		t.Fatal("Stop returned nil with batches in hand")
	}
	nacked := map[uint64]bool{}
	for len(nacked) < 2 {
		m, err := e.acks.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("nacks: %v (got %v)", err, nacked)
		}
		var a bus.Acks
		if err := bus.DecodeAcks(m.Data, &a); err != nil {
			t.Fatal(err)
		}
		for _, ack := range a.Acks {
			if ack.Nack {
				nacked[ack.Delivery] = true
			}
		}
	}
}

// quietAcks is quiet for the multi reply subject: nothing more but
// progress.
func (e *env) quietAcks(workerConn *nats.Conn) {
	e.t.Helper()
	if err := workerConn.Flush(); err != nil {
		e.t.Fatal(err)
	}
	if err := e.gw.Flush(); err != nil {
		e.t.Fatal(err)
	}
	for {
		m, err := e.acks.NextMsg(time.Millisecond)
		if err != nil {
			return
		}
		var a bus.Acks
		if err := bus.DecodeAcks(m.Data, &a); err != nil {
			e.t.Fatal(err)
		}
		for _, ack := range a.Acks {
			if !ack.Progress {
				e.t.Fatalf("unexpected final ack %+v", ack)
			}
		}
	}
}
