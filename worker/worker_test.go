package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

func TestNewValidatesConfig(t *testing.T) {
	e := newEnv(t)
	nc := e.conn("x")
	tests := []struct {
		name string
		nc   *nats.Conn
		cfg  worker.Config
	}{
		{"nil conn", nil, worker.Config{}},
		{"bad prefix", nc, worker.Config{Prefix: "a.*"}},
		{"negative concurrency", nc, worker.Config{Concurrency: -1}},
		{"negative backlog", nc, worker.Config{Backlog: -1}},
		{"negative backlog bytes", nc, worker.Config{BacklogBytes: -1}},
		{"negative progress", nc, worker.Config{ProgressInterval: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := worker.New(tt.nc, nil, tt.cfg, worker.Handlers{}); err == nil {
				t.Error("no error")
			}
		})
	}
	w, err := worker.New(nc, nil, worker.Config{}, worker.Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.ID(), "w-") || w.API() != nil || w.Stats().State != worker.StateNew {
		t.Errorf("id %q api %v state %v", w.ID(), w.API(), w.Stats().State)
	}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	var calls []string
	var mu sync.Mutex
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, s)
	}
	w, _ := e.worker(worker.Config{ID: "w1"}, worker.Handlers{
		OnWorkerStart: func(w *worker.Worker) { record("start " + w.ID()) },
		OnWorkerStop:  func(w *worker.Worker) { record("stop " + w.ID()) },
		OnMessage:     func(c *worker.Context, msg []byte) { record("message " + string(msg)) },
	})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); !errors.Is(err, worker.ErrStarted) {
		t.Errorf("second Start: %v", err)
	}
	if s := w.Stats().State; s != worker.StateRunning || s.String() != "running" {
		t.Errorf("state %v", s)
	}
	e.publish(batch(1, "c1", msgEvent("m")))
	e.final()
	ctx := context.Background()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := w.Start(); !errors.Is(err, worker.ErrStopped) {
		t.Errorf("Start after Stop: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"start w1", "message m", "stop w1"}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("calls %q, want %q", calls, want)
	}
	if s := w.Stats().State; s != worker.StateStopped {
		t.Errorf("state %v", s)
	}
}

func TestStopNeverStarted(t *testing.T) {
	e := newEnv(t)
	stopped := false
	w, _ := e.worker(worker.Config{}, worker.Handlers{OnWorkerStop: func(*worker.Worker) { stopped = true }})
	if err := w.Stop(context.Background()); err != nil || stopped {
		t.Errorf("Stop: %v, OnWorkerStop called: %v", err, stopped)
	}
}

func TestStartPanicFails(t *testing.T) {
	e := newEnv(t)
	w, _ := e.worker(worker.Config{}, worker.Handlers{OnWorkerStart: func(*worker.Worker) { panic("no db") }})
	if err := w.Start(); err == nil || !strings.Contains(err.Error(), "no db") {
		t.Errorf("Start: %v", err)
	}
	if s := w.Stats(); s.State != worker.StateStopped || s.Panics != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestRun(t *testing.T) {
	e := newEnv(t)
	got := make(chan string, 1)
	w, _ := e.worker(worker.Config{}, worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) { got <- string(msg) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, 5*time.Second, "running", func() bool { return w.Stats().State == worker.StateRunning })
	e.publish(batch(1, "c1", msgEvent("hi")))
	if m := <-got; m != "hi" {
		t.Errorf("message %q", m)
	}
	e.final()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestProgress: while a handler runs longer than ProgressInterval, the
// gateway gets progress Acks; none follows the final Ack.
func TestProgress(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	w, nc := e.start(worker.Config{ProgressInterval: 10 * time.Millisecond}, worker.Handlers{
		OnMessage: func(c *worker.Context, msg []byte) { <-release },
	})
	e.publish(batch(42, "c1", msgEvent("slow")))
	var progress []bus.Ack
	for len(progress) < 3 {
		m, err := e.acks.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var a bus.Ack
		if err := bus.DecodeAck(m.Data, &a); err != nil {
			t.Fatal(err)
		}
		if !a.Progress || a.Delivery != 42 || a.Worker != w.ID() || len(a.Actions) != 0 {
			t.Fatalf("ack %+v", a)
		}
		progress = append(progress, a)
	}
	close(release)
	if a := e.final(); a.Delivery != 42 {
		t.Errorf("final %+v", a)
	}
	before := e.progressSeen(42)
	e.quiet(nc)
	if p := e.progressSeen(42) - before; p != 0 {
		t.Errorf("%d progress acks after the final ack", p)
	}
}

// TestStopDrains: Stop finishes and acks the batch in hand, and a batch
// published after Stop began goes to the other worker of the queue group.
func TestStopDrains(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	var stops atomic.Int32
	a, aConn := e.start(worker.Config{ID: "A"}, worker.Handlers{
		OnMessage:    func(c *worker.Context, msg []byte) { <-release; c.Send(msg) },
		OnWorkerStop: func(*worker.Worker) { stops.Add(1) },
	})
	e.publish(batch(1, "c1", msgEvent("one")))
	waitFor(t, 5*time.Second, "A busy", func() bool { return a.Stats().Busy == 1 })
	e.start(worker.Config{ID: "B"}, worker.Handlers{})

	stopped := make(chan error)
	go func() { stopped <- a.Stop(context.Background()) }()
	waitFor(t, 5*time.Second, "A draining", func() bool { return a.Stats().State == worker.StateDraining })
	if err := aConn.Flush(); err != nil { // A's UNSUB has reached the server
		t.Fatal(err)
	}
	e.publish(batch(2, "c2", msgEvent("two")))
	if ack := e.final(); ack.Delivery != 2 || ack.Worker != "B" {
		t.Errorf("batch published after Stop began: %+v", ack)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned before the batch in hand finished: %v", err)
	default:
	}
	close(release)
	if ack := e.final(); ack.Delivery != 1 || ack.Worker != "A" || len(ack.Actions) != 1 {
		t.Errorf("batch in hand: %+v", ack)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v", err)
	}
	if n := stops.Load(); n != 1 {
		t.Errorf("OnWorkerStop called %d times", n)
	}
	if s := a.Stats(); s.State != worker.StateStopped || s.Acked != 1 || s.Pool != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestStopDeadlineAbandons: when Stop's ctx expires, the batches in hand
// are not acked, and their handlers' context is cancelled.
func TestStopDeadlineAbandons(t *testing.T) {
	e := newEnv(t)
	var stops atomic.Int32
	w, nc := e.start(worker.Config{Concurrency: 1, ProgressInterval: 5 * time.Millisecond}, worker.Handlers{
		OnMessage: func(c *worker.Context, msg []byte) {
			<-c.Context().Done()
			c.Send(msg)
		},
		OnWorkerStop: func(*worker.Worker) { stops.Add(1) },
	})
	e.publish(batch(1, "c1", msgEvent("running")))
	waitFor(t, 5*time.Second, "busy", func() bool { return w.Stats().Busy == 1 })
	e.publish(batch(2, "c2", msgEvent("waiting")))
	waitFor(t, 5*time.Second, "waiting", func() bool { return w.Stats().Waiting == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := w.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop: %v", err)
	}
	if n := stops.Load(); n != 1 {
		t.Errorf("OnWorkerStop called %d times", n)
	}
	waitFor(t, 5*time.Second, "abandoned", func() bool { return w.Stats().Abandoned == 2 })
	// Both are nacked, so that their gateway hands them to another worker
	// at once; nothing is acked.
	nacked := map[uint64]bool{}
	for range 2 {
		a := e.final()
		if !a.Nack || a.Attempt != 1 || len(a.Actions) != 0 || a.Error == "" {
			t.Errorf("answer to an abandoned batch: %+v, want a nack of attempt 1", a)
		}
		nacked[a.Delivery] = true
	}
	if !nacked[1] || !nacked[2] {
		t.Errorf("nacked deliveries %v, want 1 and 2", nacked)
	}
	e.quiet(nc)
	if s := w.Stats(); s.Acked != 0 || s.Nacked != 2 || s.Busy != 0 || s.Waiting != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestStopDeadlineVersion1: a batch from a gateway of protocol version 1,
// which would take a nack for an empty final ack, is left to time out
// when Stop abandons it.
func TestStopDeadlineVersion1(t *testing.T) {
	e := newEnv(t)
	w, nc := e.start(worker.Config{}, worker.Handlers{
		OnMessage: func(c *worker.Context, msg []byte) { <-c.Context().Done() },
	})
	b := batch(1, "c1", msgEvent("running"))
	b.Version = 1
	e.publish(b)
	waitFor(t, 5*time.Second, "busy", func() bool { return w.Stats().Busy == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := w.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop: %v", err)
	}
	e.quiet(nc)
	if s := w.Stats(); s.Abandoned != 1 || s.Nacked != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestConcurrencyBound: no more than Concurrency handlers run at once; the
// rest wait, and are reported in progress meanwhile.
func TestConcurrencyBound(t *testing.T) {
	e := newEnv(t)
	const n = 6
	release := make(chan struct{})
	var now, peak atomic.Int32
	w, _ := e.start(worker.Config{Concurrency: 2, ProgressInterval: 5 * time.Millisecond}, worker.Handlers{
		OnMessage: func(c *worker.Context, msg []byte) {
			cur := now.Add(1)
			for {
				p := peak.Load()
				if cur <= p || peak.CompareAndSwap(p, cur) {
					break
				}
			}
			<-release
			now.Add(-1)
		},
	})
	for i := range n {
		e.publish(batch(uint64(i+1), fmt.Sprintf("c%d", i), msgEvent("x")))
	}
	waitFor(t, 5*time.Second, "2 busy and 4 waiting", func() bool {
		s := w.Stats()
		return s.Busy == 2 && s.Waiting == n-2 && s.Pool == 2
	})
	waitFor(t, 5*time.Second, "progress ticks", func() bool { return w.Stats().Progress >= 2*n })
	close(release)
	got := map[uint64]bool{}
	for range n {
		got[e.final().Delivery] = true
	}
	if len(got) != n || peak.Load() != 2 {
		t.Errorf("acked %v, peak concurrency %d", got, peak.Load())
	}
	for d := range got {
		if e.progressSeen(d) == 0 {
			t.Errorf("no progress for delivery %d while it was in hand", d)
		}
	}
}

// TestBacklogFullDrops: a batch of a gateway older than protocol version 3
// that finds the backlog full is dropped, counted, logged and not acked
// (that gateway redelivers it after its timeout).
func TestBacklogFullDrops(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	logs := &logBuffer{}
	w, nc := e.start(worker.Config{
		Concurrency: 1, Backlog: 1, ProgressInterval: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}, worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) { <-release }})
	e.publish(batch(1, "c1", msgEvent("runs")))
	waitFor(t, 5*time.Second, "busy", func() bool { return w.Stats().Busy == 1 })
	e.publish(batch(2, "c2", msgEvent("waits")))
	old := batch(3, "c3", msgEvent("dropped"))
	old.Version = 2
	e.publish(old)
	waitFor(t, 5*time.Second, "drop", func() bool { s := w.Stats(); return s.Dropped == 1 && s.Waiting == 1 })
	waitFor(t, 5*time.Second, "drop logged", func() bool { return strings.Contains(logs.String(), "slow worker") })
	close(release)
	if a, b := e.final(), e.final(); a.Delivery != 1 || b.Delivery != 2 {
		t.Errorf("acks %d %d", a.Delivery, b.Delivery)
	}
	e.quiet(nc)
	if e.progressSeen(3) != 0 {
		t.Error("progress for a dropped batch")
	}
	if s := w.Stats(); s.Batches != 2 || s.Acked != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestPanicRecovered: a panicking handler is logged with the client and the
// stack, and the batch goes on and is acked with the actions queued.
func TestPanicRecovered(t *testing.T) {
	e := newEnv(t)
	logs := &logBuffer{}
	w, _ := e.start(worker.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}, worker.Handlers{
		OnMessage: func(c *worker.Context, msg []byte) {
			c.Send(msg)
			if string(msg) == "poison" {
				panic("boom")
			}
		},
	})
	e.publish(batch(1, "0123456789abcdef0042", msgEvent("poison"), msgEvent("next")))
	a := e.final()
	if a.Delivery != 1 || len(a.Actions) != 2 || string(a.Actions[0].Data) != "poison" || string(a.Actions[1].Data) != "next" {
		t.Errorf("ack %+v", a)
	}
	if s := w.Stats(); s.Panics != 1 || s.Messages != 2 {
		t.Errorf("stats %+v", s)
	}
	l := logs.String()
	for _, want := range []string{"client=0123456789abcdef0042", "panic=boom", "goroutine ", "worker_test.TestPanicRecovered"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
}

// TestMalformedNacked: what does not decode as a batch is logged, counted
// and nacked (attempt 0: unknown), so that its gateway can retry it and
// dead-letter it; without a reply subject it is dropped. The worker goes
// on.
func TestMalformedNacked(t *testing.T) {
	e := newEnv(t)
	logs := &logBuffer{}
	w, nc := e.start(worker.Config{ID: "W", Logger: slog.New(slog.NewTextHandler(logs, nil))}, worker.Handlers{})
	good := bus.AppendEventBatch(nil, batch(7, "c1", msgEvent("x")))
	tests := []struct {
		name  string
		data  []byte
		reply string
	}{
		{"garbage", []byte{0xff, 0xff, 0xff}, e.inbox},
		{"truncated", good[:len(good)-3], e.inbox},
		{"wrong wire type", []byte{0x1a, 0x00}, e.inbox}, // field 3 (delivery) as bytes
		{"no reply subject", good, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.publishRaw(tt.data, tt.reply)
			waitFor(t, 5*time.Second, "counted", func() bool { return w.Stats().Malformed == uint64(i+1) })
			if tt.reply == "" {
				return
			}
			if a := e.final(); !a.Nack || a.Attempt != 0 || a.Worker != "W" || !strings.Contains(a.Error, "malformed") {
				t.Errorf("answer %+v, want a nack of attempt 0 with the error", a)
			}
		})
	}
	e.quiet(nc)
	if !strings.Contains(logs.String(), "malformed batch nacked") {
		t.Errorf("not logged:\n%s", logs)
	}
	e.publish(batch(8, "c1", msgEvent("x")))
	if a := e.final(); a.Delivery != 8 || a.Nack {
		t.Errorf("ack %+v", a)
	}
	if s := w.Stats(); s.Nacked != 3 || s.Acked != 1 {
		t.Errorf("stats %+v", s)
	}
	// A batch whose frame is sound but whose event is not: its header is
	// read when it arrives, the rest when it runs; it is nacked then, under
	// its delivery and attempt.
	bad := append(bus.AppendEventBatch(nil, &bus.EventBatch{Version: bus.Version, Gateway: "gw1", Delivery: 9, Client: "c1", Attempt: 2}),
		0x32, 0x03, 0xff, 0xff, 0xff) // field 6 (an event) of 3 bytes that do not decode
	e.publishRaw(bad, e.inbox)
	if a := e.final(); !a.Nack || a.Delivery != 9 || a.Attempt != 2 || !strings.Contains(a.Error, "malformed") {
		t.Errorf("answer %+v, want a nack of delivery 9, attempt 2", a)
	}
	if s := w.Stats(); s.Malformed != 5 || s.Nacked != 4 || s.Busy != 0 || s.Waiting != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestQueueGroupSharesLoad: batches are spread over the workers of the
// queue group, and each is handled once.
func TestQueueGroupSharesLoad(t *testing.T) {
	e := newEnv(t)
	e.start(worker.Config{ID: "A"}, worker.Handlers{})
	e.start(worker.Config{ID: "B"}, worker.Handlers{})
	const n = 40
	for i := range n {
		e.publish(batch(uint64(i+1), fmt.Sprintf("c%d", i), msgEvent("x")))
	}
	by := map[string]int{}
	deliveries := map[uint64]bool{}
	for range n {
		a := e.final()
		by[a.Worker]++
		deliveries[a.Delivery] = true
	}
	if by["A"] == 0 || by["B"] == 0 || len(deliveries) != n {
		t.Errorf("acks by worker %v, deliveries %d", by, len(deliveries))
	}
}

// TestBacklogFullBusy: with the backlog full, a batch of protocol version 3
// gets a busy nack naming its delivery and attempt (a multi message's
// refused batches one Acks message), counted in Stats.Refused, while a
// version 2 batch is dropped unanswered (an older gateway would publish
// it again at once); the batches taken run and are acked.
func TestBacklogFullBusy(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	w, nc := e.start(worker.Config{Concurrency: 1, Backlog: 2, ProgressInterval: time.Hour},
		worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) { <-release }})
	e.publish(batch(1, "c1", msgEvent("runs")))
	waitFor(t, 5*time.Second, "running", func() bool { return w.Stats().Busy == 1 })
	e.publish(batch(2, "c2", msgEvent("waits")))
	e.publish(batch(3, "c3", msgEvent("waits")))
	waitFor(t, 5*time.Second, "backlog full", func() bool { return w.Stats().Waiting == 2 })

	b4 := batch(4, "c4", msgEvent("refused"))
	b4.Attempt = 3
	e.publish(b4)
	if a := e.final(); !a.Nack || !a.Busy || a.Delivery != 4 || a.Attempt != 3 || a.Worker == "" {
		t.Errorf("answer to a batch with the backlog full: %+v, want a busy nack of delivery 4, attempt 3", a)
	}
	e.publishMulti(batch(5, "c5", msgEvent("refused")), batch(6, "c6", msgEvent("refused")))
	acks := e.nextAcks()
	if len(acks) != 2 || !acks[0].Busy || !acks[1].Busy || !acks[0].Nack || acks[0].Delivery != 5 || acks[1].Delivery != 6 {
		t.Errorf("answer to a multi message with the backlog full: %+v, want busy nacks of 5 and 6 in one message", acks)
	}
	old := batch(7, "c7", msgEvent("dropped"))
	old.Version = 2
	e.publish(old)
	waitFor(t, 5*time.Second, "old batch dropped", func() bool { return w.Stats().Dropped == 1 })
	if s := w.Stats(); s.Refused != 3 || s.Batches != 3 {
		t.Errorf("stats %+v, want 3 refused and 3 taken", s)
	}
	close(release)
	for range 3 {
		if a := e.final(); a.Nack || a.Delivery > 3 {
			t.Errorf("after the release: %+v, want the final acks of 1-3", a)
		}
	}
	e.quiet(nc)
}
