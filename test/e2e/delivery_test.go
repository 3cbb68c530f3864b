package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatework/gatework/test/e2e/testapp"
)

// streamAndCheck has every client send n numbered messages as fast as it
// can, then read the n echoes: each client must get exactly its own
// messages, in order, none missing, none twice. It returns the first
// problem of each client that had one. progress, if set, is called after
// each client received half of its replies.
func streamAndCheck(clients []*client, n int, progress func()) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	var half sync.WaitGroup
	half.Add(len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			halfDone := false
			defer func() {
				if !halfDone {
					half.Done()
				}
			}()
			prefix := fmt.Sprintf("c%d-", i)
			go func() {
				for k := range n {
					if err := c.write(fmt.Appendf(nil, "%s%d", prefix, k), false); err != nil {
						return // the reader reports the gap
					}
				}
			}()
			for k := range n {
				f, err := c.recv(30 * time.Second)
				if err != nil {
					errs[i] = fmt.Errorf("client %d (%s): after %d replies: %w", i, c.proto, k, err)
					return
				}
				if want := fmt.Sprintf("%s%d", prefix, k); f.kind != kindMessage || string(f.data) != want {
					errs[i] = fmt.Errorf("client %d (%s): reply %d is %v, want %q", i, c.proto, k, f, want)
					return
				}
				if k == n/2 {
					halfDone = true
					half.Done()
				}
			}
		}()
	}
	if progress != nil {
		half.Wait()
		progress()
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// TestPerClientOrder: 50 clients (ws and tcp) each send 200 numbered
// messages as fast as they can to handlers that sleep a random 0–2 ms, with
// several handlers running at once: in one in-process worker, and spread
// over two worker processes. Every client gets its replies in order, none
// missing, none duplicated.
func TestPerClientOrder(t *testing.T) {
	const clients, msgs = 50, 200
	for _, mode := range []string{"inproc", "two processes"} {
		t.Run(mode, func(t *testing.T) {
			cc := clusterConfig{}
			if mode == "inproc" {
				cc.app = &testapp.Config{Jitter: 2 * time.Millisecond}
				cc.concurrency = 8
			} else {
				cc.processes = true
			}
			cl := startCluster(t, cc)
			if mode != "inproc" {
				cl.startWorker(t, "-id", "A", "-concurrency", "4", "-jitter", "2ms")
				cl.startWorker(t, "-id", "B", "-concurrency", "4", "-jitter", "2ms")
			}
			cs := cl.dialMany(t, "mix", clients)
			start := time.Now()
			for _, err := range streamAndCheck(cs, msgs, nil) {
				t.Error(err)
			}
			st := cl.n.Gateway().Stats()
			t.Logf("%d×%d messages in %v; %d batches, %d redelivered", clients, msgs, time.Since(start), st.EventsSent, st.Redelivered)
			if st.Redelivered != 0 {
				t.Errorf("%d batches were redelivered although no worker died", st.Redelivered)
			}
			if mode != "inproc" {
				// Clients are spread over both processes.
				seen := map[string]int{}
				for _, c := range cs {
					c.send("/worker")
					seen[string(c.next().data)]++
				}
				if seen["worker A"] == 0 || seen["worker B"] == 0 {
					t.Errorf("clients served by %v, want both workers A and B", seen)
				}
			}
		})
	}
}

// TestAtLeastOnceWorkerKilled: a worker process blocks in a handler; it is
// killed with SIGKILL while the event is in flight. A second worker process
// in the same queue group then gets the event again (attempt 2), and the
// events queued behind it follow in order: nothing is lost.
func TestAtLeastOnceWorkerKilled(t *testing.T) {
	cl := startCluster(t, clusterConfig{processes: true, eventTimeout: time.Second})
	// Progress every 200ms: the first one comes within 300ms, well inside
	// the 1s event timeout.
	a := cl.startWorker(t, "-id", "A", "-progress", "200ms")
	clients := []*client{cl.dial(t, "ws"), cl.dial(t, "tcp")}
	for i, c := range clients {
		c.send(fmt.Sprintf("/bind user%d", i))
		c.who()
		// Worker A takes /block and tells the client it holds it.
		c.send("/block")
		c.expect("blocking")
		for k := range 5 {
			c.send(fmt.Sprintf("after-%d", k))
		}
	}
	// A reports progress while it blocks: no redelivery yet.
	time.Sleep(2 * time.Second) // longer than EventTimeout, on purpose
	if st := cl.n.Gateway().Stats(); st.Redelivered != 0 || st.InFlight != len(clients) {
		t.Fatalf("while worker A blocks: %+v; want 0 redelivered, %d in flight", st, len(clients))
	}
	cl.startWorker(t, "-id", "B", "-progress", "200ms")
	a.kill()
	for i, c := range clients {
		c.expect("unblocked attempt=2")
		for k := range 5 {
			c.expect(fmt.Sprintf("after-%d", k))
		}
		if w := c.who(); w.UID != fmt.Sprintf("user%d", i) || w.Attempt != 1 {
			t.Fatalf("client %d after the redelivery: %+v", i, w)
		}
	}
	if st := cl.n.Gateway().Stats(); st.Redelivered < uint64(len(clients)) {
		t.Fatalf("stats %+v: want at least %d redelivered batches", st, len(clients))
	}
}

// TestWorkerKilledMidStream: clients stream messages to two worker
// processes; one is killed with SIGKILL halfway through. The batches it
// held are redelivered to the other: every client still gets every reply,
// in order. (A handler's actions are applied only with its final ack, so
// the replies of a batch that was handled twice appear once.)
func TestWorkerKilledMidStream(t *testing.T) {
	cl := startCluster(t, clusterConfig{processes: true, eventTimeout: time.Second})
	a := cl.startWorker(t, "-id", "A", "-concurrency", "4", "-jitter", "3ms", "-progress", "200ms")
	cl.startWorker(t, "-id", "B", "-concurrency", "4", "-jitter", "3ms", "-progress", "200ms")
	cs := cl.dialMany(t, "mix", 16)
	for _, err := range streamAndCheck(cs, 150, a.kill) {
		t.Error(err)
	}
	st := cl.n.Gateway().Stats()
	t.Logf("stats after the kill: %+v", st)
}

// TestEventsParkedWithoutWorker: with no worker running, a gateway holds
// its clients' events; when a worker process starts later, they are all
// delivered, in order.
func TestEventsParkedWithoutWorker(t *testing.T) {
	cl := startCluster(t, clusterConfig{processes: true})
	const n, msgs = 6, 20
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = cl.dial(t, []string{"ws", "tcp"}[i%2])
		cs[i].send(fmt.Sprintf("/bind parked%d", i))
		for k := range msgs {
			cs[i].send(fmt.Sprintf("m%d-%d", i, k))
		}
		cs[i].send("/who")
	}
	waitFor(t, 10*time.Second, "every client's first batch to be parked", func() bool {
		st := cl.n.Gateway().Stats()
		// The probe takes one parked batch back in flight once a second.
		return st.Parked >= n-1 && st.Parked+st.InFlight == n
	})
	for _, c := range cs {
		if len(c.in) != 0 {
			t.Fatalf("%s client got %v before any worker ran", c.proto, <-c.in)
		}
	}
	cl.startWorker(t)
	for i, c := range cs {
		for k := range msgs {
			c.expect(fmt.Sprintf("m%d-%d", i, k))
		}
		f := c.next()
		if want := fmt.Sprintf(`"uid":"parked%d"`, i); !strings.Contains(string(f.data), want) {
			t.Fatalf("client %d: /who answered %v, want %s", i, f, want)
		}
	}
	st := cl.n.Gateway().Stats()
	if st.Parked != 0 || st.Closes["event_backlog"] != 0 {
		t.Fatalf("stats %+v: want nothing parked, no event_backlog close", st)
	}
}

// TestGracefulShutdown: Node.Shutdown closes every client, WebSocket ones
// with close code 1001 (going away), and returns only after the worker
// handled their close events, which still carry the uid. The worker runs
// in the node's process (OnClose records in memory) or in another process
// (OnClose appends to a file before the event is acknowledged).
func TestGracefulShutdown(t *testing.T) {
	for _, mode := range []string{"inproc", "process"} {
		t.Run(mode, func(t *testing.T) {
			var mu sync.Mutex
			var recorded []testapp.Closed
			var closeLog string
			cc := clusterConfig{}
			if mode == "inproc" {
				cc.app = &testapp.Config{OnClose: func(c testapp.Closed) {
					mu.Lock()
					defer mu.Unlock()
					recorded = append(recorded, c)
				}}
			} else {
				cc.processes = true
			}
			cl := startCluster(t, cc)
			if mode == "process" {
				closeLog = filepath.Join(t.TempDir(), "closes.jsonl")
				cl.startWorker(t, "-closelog", closeLog)
			}
			cs := make([]*client, 10)
			for i := range cs {
				cs[i] = cl.dial(t, []string{"ws", "tcp"}[i%2])
				cs[i].send(fmt.Sprintf("/bind s%d", i))
				cs[i].who()
			}
			ctx := ctxFor(t, 30*time.Second)
			if err := cl.n.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			// Shutdown has returned: the close events were handled.
			var got []testapp.Closed
			if mode == "inproc" {
				mu.Lock()
				got = append(got, recorded...)
				mu.Unlock()
			} else {
				got = readCloseLog(t, closeLog)
			}
			byID := map[string]testapp.Closed{}
			for _, c := range got {
				if _, dup := byID[c.Client]; dup {
					t.Errorf("close event of %s handled twice", c.Client)
				}
				byID[c.Client] = c
			}
			for i, c := range cs {
				rec, ok := byID[c.id]
				if !ok {
					t.Errorf("client %s: close event not handled before Shutdown returned (%d handled)", c.id, len(got))
					continue
				}
				if rec.Reason != "shutdown" || rec.UID != fmt.Sprintf("s%d", i) {
					t.Errorf("client %s: OnClose saw %+v, want reason shutdown, uid s%d", c.id, rec, i)
				}
				f, msgs := c.expectClosed()
				if len(msgs) != 0 || f.code != closeCodeWant(c.proto, 1001) {
					t.Errorf("%s client %s: %q then %v; want close code 1001", c.proto, c.id, msgs, f)
				}
			}
			if st := cl.n.Gateway().Stats(); st.Closes["shutdown"] != uint64(len(cs)) || st.Connections != 0 {
				t.Errorf("stats after Shutdown: %+v", st)
			}
		})
	}
}

// readCloseLog reads the testworker's close log: one JSON Closed a line.
func readCloseLog(t *testing.T, path string) []testapp.Closed {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("close log: %v", err)
	}
	var out []testapp.Closed
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var c testapp.Closed
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("close log line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out
}

// TestCloseRightAfterMutations: a client sends a stream of events that
// change its own state, then disconnects at once. Every event is handled,
// in order, each seeing the changes of the ones before, and OnClose sees
// the final state: a disconnect does not make the gateway forget what the
// handlers of the client's earlier events did.
func TestCloseRightAfterMutations(t *testing.T) {
	for _, mode := range []string{"inproc", "process"} {
		for _, proto := range []string{"ws", "tcp"} {
			t.Run(mode+"/"+proto, func(t *testing.T) {
				var mu sync.Mutex
				incs := map[string]int{} // by client: /inc messages handled
				cc := clusterConfig{}
				if mode == "inproc" {
					cc.app = &testapp.Config{Jitter: time.Millisecond, OnMessage: func(client string, msg []byte) {
						if string(msg) == "/inc" {
							mu.Lock()
							incs[client]++
							mu.Unlock()
						}
					}}
				} else {
					cc.processes = true
				}
				cl := startCluster(t, cc)
				if mode == "process" {
					cl.startWorker(t, "-jitter", "1ms")
				}
				obs := cl.dial(t, proto)
				obs.send("/bind " + testapp.ObserverUID)
				obs.who()
				const n = 200
				c := cl.dial(t, proto)
				c.who()
				c.send("/bind quick")
				c.send("/join room")
				for range n {
					c.send("/inc")
				}
				c.send("/join last")
				c.close() // at once: most events are still on their way
				want := testapp.Closed{
					Client: c.id, Reason: "client_closed", UID: "quick",
					Groups: []string{"last", "room"}, Session: map[string]any{"n": n},
				}
				got := readCloseReport(t, obs)
				if mode == "inproc" {
					// OnClose ran after every message handler.
					mu.Lock()
					handled := incs[c.id]
					mu.Unlock()
					if handled < n {
						t.Fatalf("only %d of %d events handled", handled, n)
					}
				}
				if !jsonEq(got, want) {
					t.Fatalf("OnClose saw %s\nwant         %s", jsonOf(got), jsonOf(want))
				}
			})
		}
	}
}

// TestRedeliveredBatchAppliedOnce: a handler that takes longer than the
// event timeout without reporting progress gets its batch redelivered, so
// two workers handle it; the gateway applies the actions of the first
// final ack only: the client gets one reply, and its next events follow.
func TestRedeliveredBatchAppliedOnce(t *testing.T) {
	cl := startCluster(t, clusterConfig{processes: true, eventTimeout: time.Second, redeliveryBackoff: 50 * time.Millisecond})
	// Progress every 10s: the gateway hears nothing within its 1s timeout
	// (and redelivers within 100ms, back-off included, plus a tick).
	cl.startWorker(t, "-id", "A", "-progress", "10s")
	cl.startWorker(t, "-id", "B", "-progress", "10s")
	for _, proto := range []string{"ws", "tcp"} {
		c := cl.dial(t, proto)
		c.who()
		before := cl.n.Gateway().Stats().Redelivered
		start := time.Now()
		c.send("/sleep 1600 slow")
		c.send("after")
		c.send("end")
		f := c.next()
		t.Logf("%s: %q after %v", proto, f.data, time.Since(start))
		if !strings.HasPrefix(string(f.data), "slow attempt=") {
			t.Fatalf("%s: got %v, want the slow reply", proto, f)
		}
		c.expect("after")
		c.expect("end")
		t.Logf("%s: the next replies after %v", proto, time.Since(start))
		if st := cl.n.Gateway().Stats(); st.Redelivered == before {
			t.Fatalf("%s: no redelivery (stats %+v): the test did not test anything", proto, st)
		}
		c.send("/who")
		if f := c.next(); !strings.HasPrefix(string(f.data), "{") {
			t.Fatalf("%s: got %v after the redelivered batch, want only the /who answer", proto, f)
		}
	}
}
