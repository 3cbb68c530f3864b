package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

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
