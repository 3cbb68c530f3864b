package webhook

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
)

// TestBusyWhenFull: with 17 × MaxInFlight batches in hand, a batch of
// protocol version 3 gets a busy nack naming its delivery and attempt and
// is counted in Stats.Refused; one of version 2 is dropped unanswered
// (an older gateway would publish it again at once).
func TestBusyWhenFull(t *testing.T) {
	e := testbus.Start(t, natsembed.Config{})
	nc := testbus.Conn(t, e, "worker")
	gw := testbus.Conn(t, e, "gateway") // the reply inbox is a gateway's
	h, err := New(nc, Config{URL: "http://127.0.0.1:9/", MaxInFlight: 1, ID: "hook"})
	if err != nil {
		t.Fatal(err)
	}
	for range 17 {
		h.inHand[&job{}] = struct{}{}
	}
	inbox := nats.NewInbox()
	answers, err := gw.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint32{2, 3} {
		b := bus.EventBatch{Version: v, Gateway: "gw", Delivery: uint64(v), Client: "c", Attempt: 2,
			Events: []bus.Event{{Type: bus.EventMessage, Data: []byte("x")}}}
		h.onMsg(&nats.Msg{Subject: "x", Reply: inbox, Data: bus.AppendEventBatch(nil, &b)})
	}
	m, err := answers.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var a bus.Ack
	if err := bus.DecodeAck(m.Data, &a); err != nil {
		t.Fatal(err)
	}
	if !a.Nack || !a.Busy || a.Delivery != 3 || a.Attempt != 2 || a.Worker != "hook" {
		t.Errorf("answer %+v, want a busy nack of delivery 3, attempt 2", a)
	}
	if m, err := answers.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("a second answer %q: the version 2 batch must go unanswered", m.Data)
	}
	if st := h.Stats(); st.Refused != 1 || st.Dropped != 1 || st.Batches != 0 {
		t.Errorf("stats %+v, want 1 refused, 1 dropped, none taken", st)
	}
}
