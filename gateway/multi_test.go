package gateway

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
)

// multiWorker is a worker on the bus that speaks multi messages: it takes
// EventBatches on the multi subject (in the workers' queue group) and
// answers all the batches of one message with one Acks, echoing their
// messages; like every worker it also takes single batches. Unless answer
// is false: then it answers nothing (a worker that died with what it
// got). It records the batches per multi message.
type multiWorker struct {
	mu       sync.Mutex
	messages []int // batches per multi message received
	answer   atomic.Bool
	subs     []*nats.Subscription
}

func startMultiWorker(t testing.TB, nc *nats.Conn, answer bool) *multiWorker {
	t.Helper()
	w := &multiWorker{}
	w.answer.Store(answer)
	subj, _ := bus.NewSubjects("")
	echo := func(b *bus.EventBatch) bus.Ack {
		ack := bus.Ack{Delivery: b.Delivery, Worker: "multi"}
		for _, ev := range b.Events {
			if ev.Type == bus.EventMessage {
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: append([]byte(nil), ev.Data...)})
			}
		}
		return ack
	}
	multi, err := nc.QueueSubscribe(subj.EventsMulti(), subj.WorkersQueue(), func(m *nats.Msg) {
		var mb bus.EventBatches
		if err := bus.DecodeEventBatches(m.Data, &mb); err != nil {
			t.Error(err)
			return
		}
		w.mu.Lock()
		w.messages = append(w.messages, len(mb.Batches))
		w.mu.Unlock()
		if !w.answer.Load() {
			return
		}
		var acks bus.Acks
		for i := range mb.Batches {
			acks.Acks = append(acks.Acks, echo(&mb.Batches[i]))
		}
		_ = m.Respond(bus.AppendAcks(nil, &acks))
	})
	if err != nil {
		t.Fatal(err)
	}
	single, err := nc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var b bus.EventBatch
		if err := bus.DecodeEventBatch(m.Data, &b); err != nil {
			t.Error(err)
			return
		}
		if w.answer.Load() {
			ack := echo(&b)
			_ = m.Respond(bus.AppendAck(nil, &ack))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	w.subs = []*nats.Subscription{multi, single}
	t.Cleanup(w.leave)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// leave unsubscribes the worker: it is gone.
func (w *multiWorker) leave() {
	for _, sub := range w.subs {
		_ = sub.Unsubscribe()
	}
}

func (w *multiWorker) received() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.messages...)
}

// holdPublisher makes the gateway's publisher wait, the next time it
// wakes, until at least n batches are in its outbox (or 5 s passed), so
// that they go out together.
func holdPublisher(t *testing.T, n int) {
	var once atomic.Bool
	hook := func(s *Server) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			s.out.mu.Lock()
			k := len(s.out.pending)
			s.out.mu.Unlock()
			if k >= n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	beforeTake.Store(&hook)
	t.Cleanup(func() { beforeTake.Store(nil) })
}

// lineClients dials n TCP clients to s's tcp listener.
func lineClients(t *testing.T, s *Server, n int) []*bufio.ReadWriter {
	t.Helper()
	var cs []*bufio.ReadWriter
	for range n {
		c, err := net.Dial("tcp", s.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		cs = append(cs, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)))
	}
	return cs
}

// echoAll sends one line per client and checks each gets it back.
func echoAll(t *testing.T, cs []*bufio.ReadWriter, round int) {
	t.Helper()
	for i, c := range cs {
		fmt.Fprintf(c, "c%d-r%d\n", i, round)
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cs {
		line, err := c.ReadString('\n')
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if want := fmt.Sprintf("c%d-r%d\n", i, round); line != want {
			t.Fatalf("client %d got %q, want %q", i, line, want)
		}
	}
}

// waitConnected waits until the gateway counts n connections and has no
// batch in flight (their connect events are acknowledged).
func waitConnected(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if st.Connections == n && st.InFlight == 0 && st.Parked == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections, %d in flight; want %d, 0", st.Connections, st.InFlight, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMultiMessageAcrossClients: the batches of 16 clients ready at once
// go to the worker in one EventBatches message, and its one Acks message
// answers them all.
func TestMultiMessageAcrossClients(t *testing.T) {
	nc := testBus(t)
	w := startMultiWorker(t, nc, true)
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	const n = 16
	cs := lineClients(t, s, n)
	waitConnected(t, s, n)
	holdPublisher(t, n)
	before := s.Stats()
	echoAll(t, cs, 1)
	after := s.Stats()
	events, msgs, multi, acks := after.EventsSent-before.EventsSent, after.EventMessages-before.EventMessages,
		after.MultiMessages-before.MultiMessages, after.AckMessages-before.AckMessages
	t.Logf("%d batches in %d bus messages (%d multi), %d ack messages; worker got %v", events, msgs, multi, acks, w.received())
	if events != n || msgs != 1 || multi != 1 || acks != 1 {
		t.Errorf("%d batches in %d bus messages (%d multi) answered by %d ack messages; want %d in 1 (1), 1", events, msgs, multi, acks, n)
	}
	if got := w.received(); len(got) == 0 || got[len(got)-1] != n {
		t.Errorf("worker got multi messages of %v batches, want the last of %d", got, n)
	}
}

// TestMultiOrderTwoWorkers: with two multi workers, each client's
// messages come back in the order sent, whatever message carried them.
func TestMultiOrderTwoWorkers(t *testing.T) {
	nc, nc2 := twoConns(t)
	startMultiWorker(t, nc, true)
	startMultiWorker(t, nc2, true)
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	const clients, msgs = 20, 50
	cs := lineClients(t, s, clients)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range msgs {
				fmt.Fprintf(c, "c%d-%d\n", i, k)
			}
			if err := c.Flush(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, c := range cs {
		for k := range msgs {
			line, err := c.ReadString('\n')
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if want := fmt.Sprintf("c%d-%d\n", i, k); line != want {
				t.Fatalf("client %d: got %q, want %q (order lost)", i, line, want)
			}
		}
	}
	if st := s.Stats(); st.MultiMessages == 0 {
		t.Logf("no multi message under this load (stats %+v)", st.MultiMessages)
	}
}

// TestMultiWorkerDiesRedeliveredPerBatch: a multi message whose worker
// never answers (it died with it) is redelivered batch by batch after the
// timeout, each batch with attempt 2, and every client gets its echo.
func TestMultiWorkerDiesRedeliveredPerBatch(t *testing.T) {
	nc := testBus(t)
	dead := startMultiWorker(t, nc, true)                                           // answers the connect events
	seen := startScriptedWorker(t, nc, func(delivered) answer { return answerAck }) // single batches
	s := startServer(t, nc, Config{
		Listeners:         []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}},
		EventTimeout:      300 * time.Millisecond,
		RedeliveryBackoff: 50 * time.Millisecond,
	})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	const n = 8
	cs := lineClients(t, s, n)
	waitConnected(t, s, n)
	dead.answer.Store(false)
	holdPublisher(t, n)
	before := s.Stats()
	had := len(dead.received())
	for i, c := range cs {
		fmt.Fprintf(c, "c%d-r1\n", i)
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the worker has the multi message, then let it die: it
	// leaves the bus without answering.
	deadline := time.Now().Add(5 * time.Second)
	for got := dead.received(); len(got) == had || got[len(got)-1] != n; got = dead.received() {
		if time.Now().After(deadline) {
			t.Fatalf("the worker got %v, want a message of %d batches", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	dead.leave()
	for i, c := range cs {
		line, err := c.ReadString('\n')
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if want := fmt.Sprintf("c%d-r1\n", i); line != want {
			t.Fatalf("client %d got %q, want %q", i, line, want)
		}
	}
	after := s.Stats()
	if re := after.Redelivered - before.Redelivered; re != n {
		t.Errorf("%d redeliveries, want %d (one per batch of the lost message)", re, n)
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	got := 0
	for _, d := range seen.seen {
		if len(d.messages) == 0 {
			continue // a connect event
		}
		got++
		if d.attempt != 2 || len(d.messages) != 1 {
			t.Errorf("delivery %d: attempt %d, %d messages; want attempt 2, 1 message", d.delivery, d.attempt, len(d.messages))
		}
	}
	if got != n {
		t.Errorf("the single worker got %d batches with messages, want %d (one per batch of the lost message)", got, n)
	}
}

// TestMultiFallsBackToSingleWorkers: in a cluster whose workers take
// single batches only (as the Node worker and the webhook bridge do), a
// multi message gets no-responders and its batches go again one by one:
// every event is handled, and the gateway publishes single batches from
// then on (for a while).
func TestMultiFallsBackToSingleWorkers(t *testing.T) {
	nc := testBus(t)
	echoWorker(t, nc) // single batches only
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	const n = 12
	cs := lineClients(t, s, n)
	waitConnected(t, s, n)
	s.multiOffUntil.Store(0) // the connect events found no multi worker already
	holdPublisher(t, n)
	before := s.Stats()
	echoAll(t, cs, 1)
	mid := s.Stats()
	if multi := mid.MultiMessages - before.MultiMessages; multi != 1 {
		t.Errorf("%d multi messages tried, want 1", multi)
	}
	if re, ev := mid.Redelivered-before.Redelivered, mid.EventsSent-before.EventsSent; re != 0 || ev != n {
		t.Errorf("%d events sent, %d redelivered; want %d, 0 (a multi message nobody took is no delivery)", ev, re, n)
	}
	echoAll(t, cs, 2) // multi off: single batches
	after := s.Stats()
	if multi := after.MultiMessages - mid.MultiMessages; multi != 0 {
		t.Errorf("%d multi messages after no-responders, want 0 within %v", multi, multiRetry)
	}
}

// TestMultiMixedCluster: a multi worker and a worker that takes single
// batches only, side by side: every event of every client is handled, by
// one or the other.
func TestMultiMixedCluster(t *testing.T) {
	nc, nc2 := twoConns(t)
	echoWorker(t, nc2)
	mw := startMultiWorker(t, nc, true)
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	const n = 10
	cs := lineClients(t, s, n)
	waitConnected(t, s, n)
	holdPublisher(t, 2)
	for round := range 5 {
		echoAll(t, cs, round)
	}
	if len(mw.received()) == 0 {
		t.Error("the multi worker got no multi message")
	}
}

// twoConns starts an embedded NATS and returns two connections to it.
func twoConns(t testing.TB) (*nats.Conn, *nats.Conn) {
	t.Helper()
	e := testbus.Start(t, natsembed.Config{})
	return testbus.Conn(t, e, "gw"), testbus.Conn(t, e, "worker2")
}

// BenchmarkBusMessagesPerEvent runs closed-loop echo clients (each sends
// its next line when it got the last one back) against a gateway and a
// worker that speaks multi messages, and reports the bus messages that
// carried the events and the acks, per event: how much batching across
// clients saves under N concurrent clients.
func BenchmarkBusMessagesPerEvent(b *testing.B) {
	for _, clients := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			nc, wc := twoConns(b)
			startMultiWorker(b, wc, true)
			s, err := New(nc, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}},
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Shutdown(context.Background()) })
			var conns []net.Conn
			for range clients {
				c, err := net.Dial("tcp", s.Addr("tcp").String())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = c.Close() })
				conns = append(conns, c)
			}
			per := b.N/clients + 1
			before := s.Stats()
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := bufio.NewReader(c)
					line := []byte("0123456789abcdef\n")
					for range per {
						if _, err := c.Write(line); err != nil {
							b.Error(err)
							return
						}
						if _, err := r.ReadSlice('\n'); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			after := s.Stats()
			events := float64(after.EventsSent - before.EventsSent)
			b.ReportMetric(float64(after.EventMessages-before.EventMessages)/events, "eventmsgs/event")
			b.ReportMetric(float64(after.AckMessages-before.AckMessages)/events, "ackmsgs/event")
		})
	}
}

// TestMultiRefusedByPermissions: a gateway whose bus user may not publish
// multi messages (permissions from before them) turns them off at the
// first refusal: the batches of the refused message time out and go
// again as single batches, and no multi message follows.
func TestMultiRefusedByPermissions(t *testing.T) {
	subj, _ := bus.NewSubjects("")
	srv := testbus.StartServer(t, &server.Options{Host: "127.0.0.1", Port: -1, Users: []*server.User{
		{Username: "gw", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{subj.EventsMulti()}}}},
		{Username: "wk", Password: "pw"},
	}})
	connect := func(user string) *nats.Conn {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, "pw"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	nc := connect("gw")
	startMultiWorker(t, connect("wk"), true)
	s := startServer(t, nc, Config{
		Listeners:         []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}},
		EventTimeout:      300 * time.Millisecond,
		RedeliveryBackoff: 50 * time.Millisecond,
	})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	const n = 6
	var cs []*bufio.ReadWriter
	for i := range n { // one at a time: each connect event goes alone
		cs = append(cs, lineClients(t, s, 1)...)
		waitConnected(t, s, i+1)
	}
	before := s.Stats()
	holdPublisher(t, n)
	echoAll(t, cs, 1)
	mid := s.Stats()
	if multi, re := mid.MultiMessages-before.MultiMessages, mid.Redelivered-before.Redelivered; multi != 1 || re != n {
		t.Errorf("%d multi messages, %d redelivered; want the refused one, and its %d batches redelivered", multi, re, n)
	}
	holdPublisher(t, n)
	echoAll(t, cs, 2)
	if after := s.Stats(); after.MultiMessages != mid.MultiMessages || after.EventMessages-mid.EventMessages != n {
		t.Errorf("after the refusal: %d multi messages, %d bus messages for %d batches; want none, %d", after.MultiMessages-mid.MultiMessages,
			after.EventMessages-mid.EventMessages, n, n)
	}
}
