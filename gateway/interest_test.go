package gateway

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gatework/gatework/bus"
)

// TestInterestConverges: connections on every shard bind, join, leave and
// close concurrently, from several goroutines, over a few shared names;
// afterwards the gateway is subscribed to exactly the uid and group
// subjects its indexes hold, on its NATS connection too.
func TestInterestConverges(t *testing.T) {
	nc := testBus(t)
	base := nc.NumSubscriptions()
	s := startServer(t, nc, Config{Shards: 4, Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	own := nc.NumSubscriptions() - base // cmd, bcast, query, ack, heartbeats
	l := s.listeners[0]

	const workers, conns, rounds = 4, 16, 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var keep []*conn // connections left open, per worker
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cs []*conn
			for range conns {
				c := s.newConn(l, &countingTransport{}, netip.MustParseAddrPort("127.0.0.1:1"))
				c.sh.add(c)
				cs = append(cs, c)
			}
			for r := range rounds {
				c := cs[(r*7+w)%len(cs)]
				name := fmt.Sprint("n", r%5)
				sh := c.sh
				sh.mu.Lock()
				switch r % 4 {
				case 0:
					sh.joinLocked(c, name)
				case 1:
					sh.bindLocked(c, name)
				case 2:
					sh.leaveLocked(c, fmt.Sprint("n", (r+1)%5))
				case 3:
					sh.bindLocked(c, "")
				}
				sh.mu.Unlock()
				s.interest.sync()
			}
			// Close half of them.
			for _, c := range cs[:conns/2] {
				s.closed(c, ReasonClientClosed)
			}
			mu.Lock()
			keep = append(keep, cs[conns/2:]...)
			mu.Unlock()
		}()
	}
	wg.Wait()

	want := map[interestKey]bool{}
	for _, sh := range s.shards {
		sh.mu.Lock()
		for u := range sh.uids {
			want[interestKey{interestUID, u}] = true
		}
		for g := range sh.groups {
			want[interestKey{interestGroup, g}] = true
		}
		sh.mu.Unlock()
	}
	check := func(what string) {
		t.Helper()
		s.interest.syncMu.Lock()
		got := map[interestKey]bool{}
		for k, sub := range s.interest.subs {
			got[k] = true
			if sub.Subject != s.interest.subject(k) {
				t.Errorf("%s: %v subscribed as %q", what, k, sub.Subject)
			}
		}
		s.interest.syncMu.Unlock()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: subscribed %v, indexes hold %v", what, got, want)
		}
		if n := nc.NumSubscriptions() - base - own; n != len(want) {
			t.Fatalf("%s: %d interest subscriptions on the connection, want %d", what, n, len(want))
		}
	}
	check("after the churn")
	if len(want) == 0 {
		t.Fatal("nothing left indexed: the test proves little")
	}
	// Closing the rest leaves nothing.
	for _, c := range keep {
		s.closed(c, ReasonClientClosed)
	}
	want = map[interestKey]bool{}
	check("after closing all")
}

// TestRecentIDs: a MsgID is executed once while it is among the last
// maxRecentIDs; 0 is never de-duplicated.
func TestRecentIDs(t *testing.T) {
	in := newInterest(&Server{})
	for _, tc := range []struct {
		id    uint64
		first bool
	}{{0, true}, {0, true}, {7, true}, {7, false}, {8, true}, {7, false}} {
		if got := in.firstCopy(tc.id); got != tc.first {
			t.Fatalf("firstCopy(%d) = %v, want %v", tc.id, got, tc.first)
		}
	}
	// 7 is pushed out after maxRecentIDs newer ids.
	for id := uint64(100); id < 100+maxRecentIDs; id++ {
		if !in.firstCopy(id) {
			t.Fatalf("firstCopy(%d) = false", id)
		}
	}
	if !in.firstCopy(7) {
		t.Fatal("7 still remembered after the bound")
	}
	if len(in.recent) != maxRecentIDs {
		t.Fatalf("%d ids remembered, bound %d", len(in.recent), maxRecentIDs)
	}
	if in.firstCopy(100 + maxRecentIDs - 1) {
		t.Fatal("a recent id was forgotten")
	}
}

// TestMaxGroups: a connection in MaxGroups groups cannot join another, over
// the bus; rejoining one it is in is fine.
func TestMaxGroups(t *testing.T) {
	nc := testBus(t)
	s := startServer(t, nc, Config{MaxGroups: 2, Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	c := s.newConn(s.listeners[0], &countingTransport{}, netip.MustParseAddrPort("127.0.0.1:1"))
	c.sh.add(c)
	id := c.id(s.id)
	for _, tc := range []struct {
		group, code string
	}{{"a", ""}, {"b", ""}, {"c", bus.ErrCodeInvalidRequest}, {"a", ""}} {
		cmd := bus.AppendCommand(nil, &bus.Command{Version: bus.Version, Op: bus.OpJoinGroup, Clients: []string{id}, Arg: tc.group})
		m, err := nc.Request(s.subj.Cmd(s.id), cmd, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep bus.Reply
		if err := bus.DecodeReply(m.Data, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.ErrorCode != tc.code {
			t.Fatalf("join %s: code %q (%s), want %q", tc.group, rep.ErrorCode, rep.Error, tc.code)
		}
	}
	if got := s.InterestStats().Subscriptions; got != 2 {
		t.Fatalf("%d subscriptions, want 2", got)
	}
	s.closed(c, ReasonClientClosed)
}

// TestInterestWildcard: past MaxInterestSubjects uids the gateway swaps its
// uid subscriptions for the uid wildcard: sends to every uid still arrive,
// once each (a second copy with the same MsgID is dropped), groups keep
// their own subscriptions, and the NATS connection holds what the stats
// say.
func TestInterestWildcard(t *testing.T) {
	nc := testBus(t)
	// The first request subscribes the connection's reply inbox: before
	// counting.
	_, _ = nc.Request("nobody.listens", nil, time.Second)
	base := nc.NumSubscriptions()
	s := startServer(t, nc, Config{MaxInterestSubjects: 2, Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	own := nc.NumSubscriptions() - base
	request := func(cmd *bus.Command) {
		t.Helper()
		m, err := nc.Request(s.subj.Cmd(s.id), bus.AppendCommand(nil, cmd), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep bus.Reply
		if err := bus.DecodeReply(m.Data, &rep); err != nil || rep.ErrorCode != "" {
			t.Fatalf("%v: %v %s", cmd.Op, err, rep.Error)
		}
	}
	var ts []*countingTransport
	var ids []string
	for i := range 3 {
		tr := &countingTransport{}
		c := s.newConn(s.listeners[0], tr, netip.MustParseAddrPort("127.0.0.1:1"))
		tr.c = c
		c.sh.add(c)
		ts, ids = append(ts, tr), append(ids, c.id(s.id))
		request(&bus.Command{Version: bus.Version, Op: bus.OpBindUID, Clients: []string{ids[i]}, Arg: fmt.Sprint("u", i)})
		st := s.InterestStats()
		wild := i == 2 // past the bound of 2
		if st.WildcardUIDs != wild || (!wild && st.Subscriptions != i+1) || (wild && st.Subscriptions != 1) {
			t.Fatalf("after %d binds: %+v", i+1, st)
		}
	}
	request(&bus.Command{Version: bus.Version, Op: bus.OpJoinGroup, Clients: []string{ids[0]}, Arg: "g"})
	if st := s.InterestStats(); st.Subscriptions != 2 || !st.WildcardUIDs || st.WildcardGroups {
		t.Fatalf("after the join: %+v", st)
	}
	if n := nc.NumSubscriptions() - base - own; n != 2 {
		t.Fatalf("%d interest subscriptions on the connection, want 2 (the uid wildcard and g)", n)
	}

	send := func(uid string, id uint64) {
		t.Helper()
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToUID, UIDs: []string{uid}, Data: []byte("hi"), MsgID: id}
		if err := nc.Publish(s.subj.UID(uid), bus.AppendCommand(nil, &cmd)); err != nil {
			t.Fatal(err)
		}
	}
	send("u2", 5)
	send("u2", 5) // the copy a swap can cause
	send("u0", 0)
	send("u1", 6)
	request(&bus.Command{Version: bus.Version, Op: bus.OpIsOnline, Clients: []string{ids[0]}}) // after the sends, in order
	waitFor(t, 5*time.Second, "three deliveries", func() bool {
		return ts[0].writes.Load() == 1 && ts[1].writes.Load() == 1 && ts[2].writes.Load() == 1
	})
	if d := s.InterestStats().Duplicates; d != 1 {
		t.Fatalf("%d duplicates dropped, want 1", d)
	}
}
