package worker_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
	"github.com/gatework/gatework/internal/testwait"
	"github.com/gatework/gatework/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is an embedded NATS with a fake gateway: it publishes EventBatches
// with a reply inbox and reads the workers' Acks from it.
type env struct {
	t     *testing.T
	e     *natsembed.Server
	gw    *nats.Conn
	subj  bus.Subjects
	inbox string
	acks  *nats.Subscription

	mu       sync.Mutex
	progress map[uint64]int // progress Acks seen, by delivery
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := testbus.Start(t, natsembed.Config{})
	gw := testbus.Conn(t, e, "gateway")
	subj, _ := bus.NewSubjects("")
	inbox := nats.NewInbox()
	acks, err := gw.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, e: e, gw: gw, subj: subj, inbox: inbox, acks: acks, progress: map[uint64]int{}}
}

// conn returns a new connection to the bus, closed at the end of the test.
func (e *env) conn(name string) *nats.Conn {
	e.t.Helper()
	return testbus.Conn(e.t, e.e, name)
}

// worker makes a worker on its own connection; stopped at the end of the
// test (before its connection is closed).
func (e *env) worker(cfg worker.Config, h worker.Handlers) (*worker.Worker, *nats.Conn) {
	e.t.Helper()
	nc := e.conn("worker")
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	w, err := worker.New(nc, nil, cfg, h)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	return w, nc
}

// start makes and starts a worker.
func (e *env) start(cfg worker.Config, h worker.Handlers) (*worker.Worker, *nats.Conn) {
	e.t.Helper()
	w, nc := e.worker(cfg, h)
	if err := w.Start(); err != nil {
		e.t.Fatal(err)
	}
	return w, nc
}

// publish sends b as the gateway does.
func (e *env) publish(b *bus.EventBatch) {
	e.t.Helper()
	e.publishRaw(bus.AppendEventBatch(nil, b), e.inbox)
}

func (e *env) publishRaw(data []byte, reply string) {
	e.t.Helper()
	if err := e.gw.PublishMsg(&nats.Msg{Subject: e.subj.Events(), Reply: reply, Data: data}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.gw.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

// final returns the next final Ack, counting the progress Acks before it.
func (e *env) final() bus.Ack {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := e.acks.NextMsg(time.Until(deadline))
		if err != nil {
			e.t.Fatalf("no final ack: %v", err)
		}
		var a bus.Ack
		if err := bus.DecodeAck(m.Data, &a); err != nil {
			e.t.Fatalf("bad ack: %v", err)
		}
		if !a.Progress {
			return a
		}
		e.mu.Lock()
		e.progress[a.Delivery]++
		e.mu.Unlock()
	}
}

// progressSeen returns how many progress Acks final has skipped for delivery.
func (e *env) progressSeen(delivery uint64) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.progress[delivery]
}

// quiet checks that no final Ack is on its way: everything the worker's
// connection published has reached the gateway's subscription, and none of
// it is a final Ack. Progress Acks are counted.
func (e *env) quiet(workerConn *nats.Conn) {
	e.t.Helper()
	if err := workerConn.Flush(); err != nil && workerConn.IsConnected() {
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
		var a bus.Ack
		if err := bus.DecodeAck(m.Data, &a); err != nil || !a.Progress {
			e.t.Fatalf("unexpected final ack %+v (err %v)", a, err)
		}
		e.mu.Lock()
		e.progress[a.Delivery]++
		e.mu.Unlock()
	}
}

// batch returns a one-client batch of events.
func batch(delivery uint64, client string, events ...bus.Event) *bus.EventBatch {
	return &bus.EventBatch{
		Version: bus.Version, Gateway: "gw1", Delivery: delivery, Client: client,
		Attempt: 1, Events: events,
	}
}

func msgEvent(s string) bus.Event { return bus.Event{Type: bus.EventMessage, Data: []byte(s)} }

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
