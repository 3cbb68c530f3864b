package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
	"github.com/gatework/gatework/internal/testwait"
)

// TestWaitingBatchesStayEncoded: during a wave of connect batches that
// outruns the pool, the batches waiting for a goroutine are held encoded;
// only the ones running are decoded (with their requests), so what the
// worker holds in hand at the wave's peak is their bytes. Before, every
// batch was decoded as it arrived: the whole wave in hand, decoded. The
// waiting batches still get progress Acks under their delivery (read from
// the header), and all get their final Ack once the handlers go on.
func TestWaitingBatchesStayEncoded(t *testing.T) {
	const (
		concurrency = 4
		wave        = 200
	)
	srv := testbus.Start(t, natsembed.Config{})
	gw := testbus.Conn(t, srv, "gateway")
	nc := testbus.Conn(t, srv, "worker")
	subj, _ := bus.NewSubjects("")
	inbox := nats.NewInbox()
	acks, err := gw.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{}, wave)
	w, err := New(nc, nil, Config{Concurrency: concurrency, Backlog: wave, ProgressInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}, Handlers{
		OnConnect: func(c *Context) {
			started <- struct{}{}
			<-release
			c.BindUID("u-" + c.ClientID())
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(func() {
		open() // the handlers return, whatever failed
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	req := &bus.HTTPRequest{Method: "GET", Path: "/ws", Host: "example.com", Headers: []bus.Header{
		{Name: "User-Agent", Value: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"},
		{Name: "Cookie", Value: "session=0123456789abcdef0123456789abcdef"},
	}}
	for d := uint64(1); d <= wave; d++ {
		b := &bus.EventBatch{Version: bus.Version, Gateway: "gw1", Delivery: d, Client: fmt.Sprintf("c%d", d), Attempt: 1,
			Events: []bus.Event{{Type: bus.EventConnect}, {Type: bus.EventWebSocketConnect, Request: req, BeforeUpgrade: true}}}
		if err := gw.PublishMsg(&nats.Msg{Subject: subj.Events(), Reply: inbox, Data: bus.AppendEventBatch(nil, b)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := gw.Flush(); err != nil {
		t.Fatal(err)
	}
	for range concurrency {
		<-started // the handlers that run have decoded their batches
	}
	testwait.For(t, 10*time.Second, "the wave in hand", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.inHand) == wave
	})
	w.mu.Lock()
	decoded := 0
	for j := range w.inHand {
		if j.batch.Client != "" || len(j.batch.Events) > 0 {
			decoded++
		}
	}
	w.mu.Unlock()
	if decoded > concurrency {
		t.Errorf("%d of the %d batches in hand are decoded; want at most the %d running", decoded, wave, concurrency)
	}
	// Progress for a waiting batch, under the delivery of its header.
	progress := map[uint64]bool{}
	for len(progress) < 2 {
		m, err := acks.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no progress: %v", err)
		}
		var a bus.Ack
		if err := bus.DecodeAck(m.Data, &a); err != nil || !a.Progress || a.Delivery < 1 || a.Delivery > wave {
			t.Fatalf("answer %+v (%v), want progress of a delivery of the wave", a, err)
		}
		progress[a.Delivery] = true
	}
	open()
	finals := map[uint64]bool{}
	for len(finals) < wave {
		m, err := acks.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("%d final acks of %d: %v", len(finals), wave, err)
		}
		var a bus.Ack
		if err := bus.DecodeAck(m.Data, &a); err != nil {
			t.Fatal(err)
		}
		if a.Progress {
			continue
		}
		if a.Nack || len(a.Actions) != 1 || a.Actions[0].Type != bus.ActionBindUID {
			t.Fatalf("final ack %+v, want one bind", a)
		}
		finals[a.Delivery] = true
	}
}
