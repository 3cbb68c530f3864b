package gateway

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// answer is what scriptedWorker does with one delivery.
type answer int

const (
	answerAck  answer = iota // final ack, echoing the messages
	answerNone               // nothing: the delivery times out
	answerNack               // nack this attempt
	answerBusy               // busy nack: no room for it
)

// delivered is one delivery a scriptedWorker received.
type delivered struct {
	at       time.Time
	delivery uint64
	attempt  uint32
	version  uint32
	messages []string
	closed   string // the close reason of a close event in the batch
}

// scriptedWorker is a worker on the bus whose answer to each delivery is
// chosen by decide; it records every delivery.
type scriptedWorker struct {
	mu   sync.Mutex
	seen []delivered
}

func startScriptedWorker(t *testing.T, nc *nats.Conn, decide func(d delivered) answer) *scriptedWorker {
	t.Helper()
	w := &scriptedWorker{}
	subj, _ := bus.NewSubjects("")
	sub, err := nc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var b bus.EventBatch
		if err := bus.DecodeEventBatch(m.Data, &b); err != nil {
			t.Error(err)
			return
		}
		d := delivered{at: time.Now(), delivery: b.Delivery, attempt: b.Attempt, version: b.Version}
		ack := bus.Ack{Delivery: b.Delivery, Worker: "scripted"}
		for _, ev := range b.Events {
			if ev.Type == bus.EventClose {
				d.closed = ev.CloseReason
			}
			if ev.Type == bus.EventMessage {
				d.messages = append(d.messages, string(ev.Data))
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: append([]byte(nil), ev.Data...)})
			}
		}
		w.mu.Lock()
		w.seen = append(w.seen, d)
		w.mu.Unlock()
		switch decide(d) {
		case answerAck:
			_ = m.Respond(bus.AppendAck(nil, &ack))
		case answerNack:
			_ = m.Respond(bus.AppendAck(nil, &bus.Ack{Delivery: b.Delivery, Nack: true, Attempt: b.Attempt,
				Error: "cannot", Worker: "scripted"}))
		case answerBusy:
			_ = m.Respond(bus.AppendAck(nil, &bus.Ack{Delivery: b.Delivery, Nack: true, Busy: true, Attempt: b.Attempt,
				Error: "busy", Worker: "scripted"}))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// closeReason returns the close reason of the first close event seen.
func (w *scriptedWorker) closeReason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.seen {
		if d.closed != "" {
			return d.closed
		}
	}
	return ""
}

// deliveriesOf returns the deliveries of the batch holding message msg.
func (w *scriptedWorker) deliveriesOf(msg string) []delivered {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []delivered
	for _, d := range w.seen {
		for _, m := range d.messages {
			if m == msg {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// poison returns a decide function that answers a with every delivery
// of a batch holding message "poison" and acks everything else.
func poison(a answer) func(d delivered) answer {
	return func(d delivered) answer {
		for _, m := range d.messages {
			if m == "poison" {
				return a
			}
		}
		return answerAck
	}
}

// deadLetters subscribes to the dead-letter subject.
func deadLetters(t *testing.T, nc *nats.Conn) chan bus.DeadLetter {
	t.Helper()
	subj, _ := bus.NewSubjects("")
	ch := make(chan bus.DeadLetter, 16)
	sub, err := nc.Subscribe(subj.DeadLetter(), func(m *nats.Msg) {
		var dl bus.DeadLetter
		if err := bus.DecodeDeadLetter(m.Data, &dl); err != nil {
			t.Error(err)
			return
		}
		ch <- dl
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

// lineClient is a TCP client of the default line framing.
type lineClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialLine(t *testing.T, s *Server) *lineClient {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &lineClient{c: c, r: bufio.NewReader(c)}
}

func (l *lineClient) send(t *testing.T, msg string) {
	t.Helper()
	if _, err := l.c.Write([]byte(msg + "\n")); err != nil {
		t.Fatal(err)
	}
}

func (l *lineClient) expect(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	_ = l.c.SetReadDeadline(time.Now().Add(timeout))
	got, err := l.r.ReadString('\n')
	if err != nil || got != want+"\n" {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

func redeliveryServer(t *testing.T, nc *nats.Conn, cfg Config) *Server {
	t.Helper()
	cfg.Listeners = []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}
	s := startServer(t, nc, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// TestPoisonBatchDeadLettered: a batch that no worker ever acknowledges is
// delivered MaxDeliveries times, then published as a dead letter, counted,
// and the client's next event is delivered.
func TestPoisonBatchDeadLettered(t *testing.T) {
	nc := testBus(t)
	w := startScriptedWorker(t, nc, poison(answerNone))
	dead := deadLetters(t, nc)
	s := redeliveryServer(t, nc, Config{EventTimeout: 100 * time.Millisecond, RedeliveryBackoff: 20 * time.Millisecond, MaxDeliveries: 3})
	c := dialLine(t, s)
	c.send(t, "poison")
	waitFor(t, 5*time.Second, "the poison batch", func() bool { return len(w.deliveriesOf("poison")) == 1 })
	c.send(t, "next")
	c.expect(t, "next", 10*time.Second)

	ds := w.deliveriesOf("poison")
	if len(ds) != 3 {
		t.Fatalf("poison batch delivered %d times, want 3", len(ds))
	}
	for i, d := range ds {
		if d.attempt != uint32(i+1) || d.delivery != ds[0].delivery || d.version != bus.Version {
			t.Errorf("delivery %d: %+v", i, d)
		}
	}
	select {
	case dl := <-dead:
		if dl.Reason != bus.DeadLetterTimeout || dl.Batch.Attempt != 3 || dl.Batch.Delivery != ds[0].delivery ||
			len(dl.Batch.Events) != 1 || string(dl.Batch.Events[0].Data) != "poison" || dl.Version != bus.Version ||
			dl.Batch.Client == "" || dl.Batch.State.Protocol != "tcp" {
			t.Errorf("dead letter %+v", dl)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no dead letter")
	}
	st := s.Stats()
	if st.DeadLettered != 1 || st.TimedOut != 3 || st.Redelivered != 2 || st.Closes["event_failed"] != 0 {
		t.Errorf("stats: dead %d, timed out %d, redelivered %d, closes %v", st.DeadLettered, st.TimedOut, st.Redelivered, st.Closes)
	}
}

// TestDeadLetterPolicyClose: with DeadLetterPolicy close, the client of a
// dead-lettered batch is closed (event_failed), and its close event still
// reaches the workers.
func TestDeadLetterPolicyClose(t *testing.T) {
	nc := testBus(t)
	w := startScriptedWorker(t, nc, poison(answerNone))
	s := redeliveryServer(t, nc, Config{EventTimeout: 100 * time.Millisecond, RedeliveryBackoff: 20 * time.Millisecond,
		MaxDeliveries: 2, DeadLetterPolicy: DeadLetterClose})
	c := dialLine(t, s)
	c.send(t, "poison")
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := c.r.ReadByte(); err == nil {
		t.Fatalf("read %q, want the connection closed", b)
	}
	waitFor(t, 5*time.Second, "the close event", func() bool { return w.closeReason() == "event_failed" })
	waitFor(t, 5*time.Second, "the close event acknowledged", func() bool { return s.inFlight() == 0 })
	if st := s.Stats(); st.DeadLettered != 1 || st.Closes["event_failed"] != 1 {
		t.Errorf("dead lettered %d, closes %v", st.DeadLettered, st.Closes)
	}
}

// TestNackRedeliversAtOnce: a nack brings the batch back at once, long
// before the event timeout; a nack of an older attempt is ignored; a nack
// of the last delivery dead-letters the batch with the worker's error.
func TestNackRedeliversAtOnce(t *testing.T) {
	nc := testBus(t)
	w := startScriptedWorker(t, nc, func(d delivered) answer {
		switch {
		case len(d.messages) == 0 || d.messages[0] == "next":
			return answerAck
		case d.messages[0] == "twice" && d.attempt > 1:
			return answerNone // the test answers
		}
		return answerNack
	})
	// A second subscriber records the reply subject of "twice" so that the
	// test can answer it.
	subj, _ := bus.NewSubjects("")
	replies := make(chan string, 4)
	spy, err := nc.Subscribe(subj.Events(), func(m *nats.Msg) {
		var b bus.EventBatch
		if bus.DecodeEventBatch(m.Data, &b) == nil && len(b.Events) > 0 && string(b.Events[0].Data) == "twice" {
			replies <- m.Reply
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = spy.Unsubscribe() }()
	dead := deadLetters(t, nc)
	s := redeliveryServer(t, nc, Config{EventTimeout: 10 * time.Second, MaxDeliveries: 3})
	c := dialLine(t, s)

	start := time.Now()
	c.send(t, "twice")
	waitFor(t, 5*time.Second, "the second delivery", func() bool { return len(w.deliveriesOf("twice")) == 2 })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the nacked batch came back after %v; the event timeout is 10s", took)
	}
	ds := w.deliveriesOf("twice")
	if ds[0].attempt != 1 || ds[1].attempt != 2 || ds[1].delivery != ds[0].delivery {
		t.Fatalf("deliveries %+v", ds)
	}
	reply := <-replies
	// A stale nack (of attempt 1, while attempt 2 is out) does nothing.
	if err := nc.Publish(reply, bus.AppendAck(nil, &bus.Ack{Delivery: ds[0].delivery, Nack: true, Attempt: 1, Worker: "stale"})); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(w.deliveriesOf("twice")); n != 2 {
		t.Fatalf("the stale nack brought the batch back: %d deliveries", n)
	}
	ack := bus.Ack{Delivery: ds[0].delivery, Actions: []bus.Action{{Type: bus.ActionSend, Data: []byte("twice")}}}
	if err := nc.Publish(reply, bus.AppendAck(nil, &ack)); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "twice", 5*time.Second)

	c.send(t, "poison")
	waitFor(t, 5*time.Second, "the poison batch", func() bool { return len(w.deliveriesOf("poison")) > 0 })
	c.send(t, "next")
	c.expect(t, "next", 5*time.Second)
	if n := len(w.deliveriesOf("poison")); n != 3 {
		t.Errorf("poison batch delivered %d times, want 3", n)
	}
	select {
	case dl := <-dead:
		if dl.Reason != bus.DeadLetterNack || dl.Error != "cannot" || dl.Worker != "scripted" || dl.Batch.Attempt != 3 {
			t.Errorf("dead letter %+v", dl)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no dead letter")
	}
	st := s.Stats()
	if st.Nacked != 4 || st.DeadLettered != 1 || st.TimedOut != 0 { // twice: 1, poison: 3
		t.Errorf("stats: nacked %d, dead %d, timed out %d", st.Nacked, st.DeadLettered, st.TimedOut)
	}
}

// TestBusyNackRepeatsAttempt: a busy nack spends no delivery: with
// MaxDeliveries 1 a batch refused busy three times goes again each time as
// attempt 1, after a back-off of at least 50 ms, and is then handled; it is
// counted in Stats.Busy and Redelivered, not in Nacked, and the window is
// cut to the batches still out (none: its floor).
func TestBusyNackRepeatsAttempt(t *testing.T) {
	nc := testBus(t)
	var refusals int
	w := startScriptedWorker(t, nc, func(d delivered) answer {
		if len(d.messages) > 0 && d.messages[0] == "crowded" && refusals < 3 {
			refusals++ // the subscription's one goroutine: no lock needed
			return answerBusy
		}
		return answerAck
	})
	dead := deadLetters(t, nc)
	s := redeliveryServer(t, nc, Config{EventTimeout: 10 * time.Second, MaxDeliveries: 1})
	c := dialLine(t, s)
	start := time.Now()
	c.send(t, "crowded")
	c.expect(t, "crowded", 5*time.Second)
	ds := w.deliveriesOf("crowded")
	if len(ds) != 4 {
		t.Fatalf("%d deliveries, want 3 refused and 1 handled", len(ds))
	}
	for i, d := range ds {
		if d.attempt != 1 || d.delivery != ds[0].delivery || d.version != bus.Version {
			t.Errorf("delivery %d: %+v, want attempt 1 of delivery %d, version %d", i, d, ds[0].delivery, bus.Version)
		}
		if i > 0 && d.at.Sub(ds[i-1].at) < busyBackoff/2 {
			t.Errorf("delivery %d came %v after the refusal, want at least %v", i, d.at.Sub(ds[i-1].at), busyBackoff/2)
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("handled after %v: the busy back-off is %v doubled up to the 1s redelivery back-off", took, busyBackoff)
	}
	select {
	case dl := <-dead:
		t.Errorf("dead letter %+v for a batch refused busy", dl)
	case <-time.After(100 * time.Millisecond):
	}
	st := s.Stats()
	if st.Busy != 3 || st.Redelivered != 3 || st.Nacked != 0 || st.DeadLettered != 0 || st.EventsSent != 2 || st.Window != minWindow {
		t.Errorf("stats: busy %d, redelivered %d, nacked %d, dead %d, sent %d, window %d; want 3, 3, 0, 0, 2 (connect, message), %d",
			st.Busy, st.Redelivered, st.Nacked, st.DeadLettered, st.EventsSent, st.Window, minWindow)
	}
}

// TestRedeliveryBackoffGrows: the wait between the deliveries of a batch
// that times out grows exponentially (event timeout + back-off with
// jitter between half and all of 100ms, 200ms, 400ms, ...).
func TestRedeliveryBackoffGrows(t *testing.T) {
	nc := testBus(t)
	w := startScriptedWorker(t, nc, poison(answerNone))
	const timeout, backoff = 50 * time.Millisecond, 100 * time.Millisecond
	s := redeliveryServer(t, nc, Config{EventTimeout: timeout, RedeliveryBackoff: backoff, RedeliveryBackoffMax: time.Second, MaxDeliveries: 5})
	c := dialLine(t, s)
	c.send(t, "poison")
	waitFor(t, 5*time.Second, "the poison batch", func() bool { return len(w.deliveriesOf("poison")) == 1 })
	c.send(t, "next")
	c.expect(t, "next", 10*time.Second)
	ds := w.deliveriesOf("poison")
	if len(ds) != 5 {
		t.Fatalf("%d deliveries, want 5", len(ds))
	}
	// The redelivery timer ticks every 100ms: it sees a deadline up to
	// one tick late, twice per delivery (timeout, then back-off).
	const tick, slack = 100 * time.Millisecond, 400 * time.Millisecond
	for i := 1; i < len(ds); i++ {
		gap := ds[i].at.Sub(ds[i-1].at)
		wait := backoff << (i - 1)
		low, high := timeout+wait/2, timeout+wait+2*tick+slack
		t.Logf("delivery %d → %d: %v (want %v … %v)", i, i+1, gap.Round(time.Millisecond), low, high)
		if gap < low || gap > high {
			t.Errorf("delivery %d came %v after delivery %d, want %v … %v", i+1, gap, i, low, high)
		}
	}
}

// TestBackoffDelay: the back-off doubles per failed delivery up to the
// cap, and each wait is drawn between half and all of it.
func TestBackoffDelay(t *testing.T) {
	s := &Server{cfg: Config{RedeliveryBackoff: 100 * time.Millisecond, RedeliveryBackoffMax: time.Second}}
	for attempt, full := range map[uint32]time.Duration{1: 100e6, 2: 200e6, 3: 400e6, 4: 800e6, 5: time.Second, 40: time.Second} {
		var lo, hi time.Duration = full, 0
		for range 2000 {
			d := s.backoffDelay(attempt)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < full/2 || hi > full || hi-lo < full/4 {
			t.Errorf("attempt %d: waits %v … %v, want spread over %v … %v", attempt, lo, hi, full/2, full)
		}
	}
}

// TestShutdownNotHeldByPoisonBatch: a batch no worker acknowledges holds
// Shutdown only until it is dead-lettered (then the client's close event
// goes through), and never past Shutdown's deadline.
func TestShutdownNotHeldByPoisonBatch(t *testing.T) {
	for _, deadline := range []time.Duration{10 * time.Second, 300 * time.Millisecond} {
		nc := testBus(t)
		w := startScriptedWorker(t, nc, poison(answerNone))
		cfg := Config{EventTimeout: 100 * time.Millisecond, RedeliveryBackoff: 20 * time.Millisecond, MaxDeliveries: 3,
			Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}}
		if deadline < time.Second {
			cfg.EventTimeout = 10 * time.Second
		}
		s := startServer(t, nc, cfg)
		c := dialLine(t, s)
		c.send(t, "poison")
		waitFor(t, 5*time.Second, "the poison batch", func() bool { return len(w.deliveriesOf("poison")) == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		err := s.Shutdown(ctx)
		took := time.Since(start)
		cancel()
		t.Logf("deadline %v: Shutdown took %v: %v", deadline, took, err)
		if deadline > time.Second {
			// Three deliveries of 100ms and two short back-offs, then the
			// close event: well within the deadline.
			if err != nil || took > 3*time.Second || w.closeReason() != "shutdown" {
				t.Errorf("Shutdown: %v after %v, close event %q", err, took, w.closeReason())
			}
		} else if took > deadline+500*time.Millisecond {
			t.Errorf("Shutdown took %v, past its %v deadline", took, deadline)
		}
	}
}

func TestRedeliveryConfig(t *testing.T) {
	ls := []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" means valid
	}{
		{"defaults", Config{}, ""},
		{"close policy", Config{DeadLetterPolicy: DeadLetterClose, MaxDeliveries: 1}, ""},
		{"negative max_deliveries", Config{MaxDeliveries: -1}, "max_deliveries"},
		{"negative backoff", Config{RedeliveryBackoff: -time.Second}, "negative"},
		{"max below backoff", Config{RedeliveryBackoff: time.Minute, RedeliveryBackoffMax: time.Second}, "redelivery_backoff_max"},
		{"bad policy", Config{DeadLetterPolicy: "drop"}, "dead_letter_policy"},
	}
	for _, tt := range tests {
		tt.cfg.Listeners = ls
		err := tt.cfg.Validate()
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	c := Config{RedeliveryBackoff: time.Minute}
	c.applyDefaults()
	if c.MaxDeliveries != 5 || c.RedeliveryBackoffMax != time.Minute || c.DeadLetterPolicy != DeadLetterContinue {
		t.Errorf("defaults: %d, %v, %q", c.MaxDeliveries, c.RedeliveryBackoffMax, c.DeadLetterPolicy)
	}
	c = Config{}
	c.applyDefaults()
	if c.RedeliveryBackoff != time.Second || c.RedeliveryBackoffMax != 30*time.Second {
		t.Errorf("defaults: %v, %v", c.RedeliveryBackoff, c.RedeliveryBackoffMax)
	}
}
