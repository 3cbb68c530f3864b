package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
)

// trio is three gateways in this process on one embedded NATS, each with
// its own NATS connection and a line-framed TCP listener, a bare worker
// that tells each client its id, and an API client.
type trio struct {
	e    *natsembed.Server
	gws  []*gateway.Server
	ncs  []*nats.Conn
	subj bus.Subjects
	api  *api.Client
}

func startTrio(t *testing.T, cfg gateway.Config) *trio {
	t.Helper()
	return startTrioWith(t, cfg, nil)
}

// startTrioWith is startTrio with the events handled by startWorker (nil:
// startIDWorker) and the listeners of cfg when it has some (each needs a
// name; a test client dials the one named "tcp").
func startTrioWith(t *testing.T, cfg gateway.Config, startWorker func(t *testing.T, nc *nats.Conn)) *trio {
	t.Helper()
	tr := &trio{e: testbus.Start(t, natsembed.Config{}), subj: bus.Subjects{Prefix: bus.DefaultPrefix}}
	if startWorker == nil {
		startWorker = startIDWorker
	}
	startWorker(t, tr.conn(t, "worker"))
	for i := range 3 {
		nc := tr.conn(t, fmt.Sprintf("gw%d", i))
		c := cfg
		c.Logger = testLogger(t)
		if len(c.Listeners) == 0 {
			c.Listeners = []gateway.ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}
		}
		gw, err := gateway.New(nc, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := gw.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = gw.Shutdown(ctx)
		})
		tr.gws, tr.ncs = append(tr.gws, gw), append(tr.ncs, nc)
	}
	tr.api = tr.client(t)
	return tr
}

// conn returns a new NATS connection, closed when the test ends.
func (tr *trio) conn(t *testing.T, name string) *nats.Conn {
	t.Helper()
	return testbus.Conn(t, tr.e, name)
}

// client returns an API client on its own NATS connection.
func (tr *trio) client(t *testing.T) *api.Client {
	t.Helper()
	c, err := api.New(tr.conn(t, "api"), api.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// received returns each gateway's count of commands received from the bus.
func (tr *trio) received() []uint64 {
	out := make([]uint64, len(tr.gws))
	for i, gw := range tr.gws {
		out[i] = gw.InterestStats().Received
	}
	return out
}

// subscriptions returns each gateway's uid and group subscriptions.
func (tr *trio) subscriptions() []int {
	out := make([]int, len(tr.gws))
	for i, gw := range tr.gws {
		out[i] = gw.InterestStats().Subscriptions
	}
	return out
}

// startIDWorker acks every event batch and answers a connect with the
// client's id, so that a test client learns it. A message "join <g>" or
// "bind <u>" is answered with that action followed by a send of "ok <g>"
// (or "ok <u>"), in one ack.
func startIDWorker(t *testing.T, nc *nats.Conn) {
	t.Helper()
	subj := bus.Subjects{Prefix: bus.DefaultPrefix}
	_, err := nc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var b bus.EventBatch
		if err := bus.DecodeEventBatch(m.Data, &b); err != nil {
			t.Error(err)
			return
		}
		ack := bus.Ack{Delivery: b.Delivery}
		for _, ev := range b.Events {
			if ev.Type == bus.EventConnect {
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: []byte(b.Client)})
			}
			if verb, arg, ok := strings.Cut(string(ev.Data), " "); ok && ev.Type == bus.EventMessage {
				typ := map[string]bus.ActionType{"join": bus.ActionJoinGroup, "bind": bus.ActionBindUID}[verb]
				ack.Actions = append(ack.Actions, bus.Action{Type: typ, Arg: arg},
					bus.Action{Type: bus.ActionSend, Data: []byte("ok " + arg)})
			}
		}
		_ = m.Respond(bus.AppendAck(nil, &ack))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// lineClient is a TCP client of a line-framed listener.
type lineClient struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	id string
}

// dial connects to gateway i and reads the client's id.
func (tr *trio) dial(t *testing.T, i int) *lineClient {
	t.Helper()
	c, err := net.Dial("tcp", tr.gws[i].Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	lc := &lineClient{t: t, c: c, r: bufio.NewReader(c)}
	lc.id = lc.read()
	if !strings.HasPrefix(lc.id, tr.gws[i].ID()) {
		t.Fatalf("client id %q is not of gateway %s", lc.id, tr.gws[i].ID())
	}
	return lc
}

func (lc *lineClient) read() string {
	lc.t.Helper()
	_ = lc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := lc.r.ReadString('\n')
	if err != nil {
		lc.t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

func (lc *lineClient) send(line string) {
	lc.t.Helper()
	if _, err := lc.c.Write([]byte(line + "\n")); err != nil {
		lc.t.Fatal(err)
	}
}

// expect reads the next messages and fails unless they are want, in order.
func (lc *lineClient) expect(want ...string) {
	lc.t.Helper()
	for _, w := range want {
		if got := lc.read(); got != w {
			lc.t.Fatalf("client %s got %q, want %q", lc.id, got, w)
		}
	}
}

// TestInterestRouting: with members of a group on one gateway of three, a
// SendToGroup reaches that gateway only (the v1 broadcast reached all
// three); multi-name sends reach each connection once; uid sends reach
// exactly the gateways holding the uids; UnGroup goes to the gateways
// holding members.
func TestInterestRouting(t *testing.T) {
	tr := startTrio(t, gateway.Config{})
	ctx := ctxFor(t, 30*time.Second)
	a1, a2, b1, c1 := tr.dial(t, 0), tr.dial(t, 0), tr.dial(t, 1), tr.dial(t, 2)
	must(t, "join a1", tr.api.JoinGroup(ctx, a1.id, "g"))
	must(t, "join a2", tr.api.JoinGroup(ctx, a2.id, "g"))
	if got := tr.subscriptions(); !slices.Equal(got, []int{1, 0, 0}) {
		t.Fatalf("subscriptions = %v, want [1 0 0]", got)
	}

	// Bus messages per SendToGroup with members on 1 of 3 gateways.
	const sends = 100
	// send publishes message i; mark sends "mark" to a client from the
	// same publisher, so that a gateway that has the mark has received
	// every send before it.
	perSend := func(send func(i int), mark func(id string)) []uint64 {
		before := tr.received()
		for i := range sends {
			send(i)
		}
		for i := range sends {
			a1.expect(fmt.Sprint(i))
			a2.expect(fmt.Sprint(i))
		}
		// A marker behind the sends on every gateway: once each has
		// it, each has received everything sent before.
		for _, c := range []*lineClient{a1, b1, c1} {
			mark(c.id)
		}
		a1.expect("mark")
		b1.expect("mark")
		c1.expect("mark")
		after := tr.received()
		for i := range after {
			after[i] -= before[i] + 1
		}
		return after
	}
	routed := perSend(func(i int) {
		must(t, "send", tr.api.SendToGroup(ctx, []string{"g"}, []byte(fmt.Sprint(i))))
	}, func(id string) {
		must(t, "mark", tr.api.SendToClient(ctx, id, []byte("mark")))
	})
	// The same through the v1 broadcast subject, as a v1 publisher did.
	raw := tr.conn(t, "v1")
	v1 := perSend(func(i int) {
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToGroup, Groups: []string{"g"}, Data: []byte(fmt.Sprint(i))}
		must(t, "v1 send", raw.Publish(tr.subj.Broadcast(), bus.AppendCommand(nil, &cmd)))
	}, func(id string) {
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToClient, Clients: []string{id}, Data: []byte("mark")}
		must(t, "v1 mark", raw.Publish(tr.subj.Cmd(id[:10]), bus.AppendCommand(nil, &cmd)))
	})
	t.Logf("bus messages per SendToGroup with members on 1 of 3 gateways: routed %v per gateway for %d sends (%.1f per send), v1 broadcast %v (%.1f per send)",
		routed, sends, float64(sum(routed))/sends, v1, float64(sum(v1))/sends)
	if !slices.Equal(routed, []uint64{sends, 0, 0}) {
		t.Errorf("routed: commands received per gateway = %v, want [%d 0 0]", routed, sends)
	}
	if !slices.Equal(v1, []uint64{sends, sends, sends}) {
		t.Errorf("v1 broadcast: commands received per gateway = %v, want %d each", v1, sends)
	}

	// b1 in g and h: a send to both reaches it once; its gateway got two
	// copies and dropped one.
	must(t, "join b1 g", tr.api.JoinGroup(ctx, b1.id, "g"))
	must(t, "join b1 h", tr.api.JoinGroup(ctx, b1.id, "h"))
	dupBefore := tr.gws[1].InterestStats().Duplicates
	must(t, "send g h", tr.api.SendToGroup(ctx, []string{"g", "h"}, []byte("gh")))
	must(t, "after", tr.api.SendToClient(ctx, b1.id, []byte("after")))
	b1.expect("gh", "after")
	a1.expect("gh")
	a2.expect("gh")
	if d := tr.gws[1].InterestStats().Duplicates - dupBefore; d != 1 {
		t.Errorf("gateway B dropped %d copies, want 1", d)
	}
	// without still applies to routed sends.
	must(t, "send g without a1", tr.api.SendToGroup(ctx, []string{"g", "h"}, []byte("not a1"), a1.id))
	must(t, "after", tr.api.SendToClient(ctx, a1.id, []byte("after")))
	a1.expect("after")
	a2.expect("not a1")
	b1.expect("not a1")

	// uids on two gateways: each bound connection once, the third
	// gateway receives nothing.
	must(t, "bind a1", tr.api.BindUID(ctx, a1.id, "u1"))
	must(t, "bind c1", tr.api.BindUID(ctx, c1.id, "u2"))
	before := tr.received()
	must(t, "send uids", tr.api.SendToUID(ctx, []string{"u1", "u2", "nobody"}, []byte("uids")))
	must(t, "send uid", tr.api.SendToUID(ctx, []string{"u2"}, []byte("u2 only")))
	must(t, "after", tr.api.SendToClient(ctx, a1.id, []byte("after")))
	must(t, "after", tr.api.SendToClient(ctx, c1.id, []byte("after")))
	a1.expect("uids", "after")
	c1.expect("uids", "u2 only", "after")
	if d := tr.received()[1] - before[1]; d != 0 {
		t.Errorf("gateway B received %d commands for uids it does not hold", d)
	}

	// UnGroup g: members on A and B leave it, C never hears of it.
	before = tr.received()
	must(t, "ungroup", tr.api.UnGroup(ctx, "g"))
	waitFor(t, 5*time.Second, "group g dissolved", func() bool {
		n, err := tr.api.GetClientCountByGroup(ctx, "g")
		return err == nil && n.Value == 0 && !n.Partial
	})
	if d := tr.received()[2] - before[2]; d != 0 {
		t.Errorf("gateway C received %d commands for a group it does not hold", d)
	}
	// Left: A holds uid u1; B holds group h; C holds uid u2.
	waitFor(t, 5*time.Second, "subscriptions after UnGroup", func() bool { return slices.Equal(tr.subscriptions(), []int{1, 1, 1}) })
	must(t, "send g", tr.api.SendToGroup(ctx, []string{"g", "h"}, []byte("h only")))
	must(t, "after", tr.api.SendToClient(ctx, a1.id, []byte("after")))
	b1.expect("h only")
	a1.expect("after")
}

// TestInterestJoinThenSend: a send published after JoinGroup or BindUID
// returned, by another API client on its own connection, reaches the
// client: the subscription is in place before the answer.
func TestInterestJoinThenSend(t *testing.T) {
	tr := startTrio(t, gateway.Config{})
	ctx := ctxFor(t, 30*time.Second)
	other := tr.client(t)
	clients := []*lineClient{tr.dial(t, 0), tr.dial(t, 1), tr.dial(t, 2)}
	for i := range 60 {
		c := clients[i%3]
		name := fmt.Sprintf("fresh-%d", i)
		if i%2 == 0 {
			must(t, "join", tr.api.JoinGroup(ctx, c.id, name))
			must(t, "send", other.SendToGroup(ctx, []string{name}, []byte(name)))
		} else {
			must(t, "bind", tr.api.BindUID(ctx, c.id, name))
			must(t, "send", other.SendToUID(ctx, []string{name}, []byte(name)))
		}
		c.expect(name)
	}
	// The same with the join or bind done by a worker's action: what the
	// ack also sends to the client does not overtake the subscription.
	for i := range 60 {
		c := clients[i%3]
		name := fmt.Sprintf("action-%d", i)
		verb := []string{"join", "bind"}[i%2]
		c.send(verb + " " + name)
		c.expect("ok " + name)
		if verb == "join" {
			must(t, "send", other.SendToGroup(ctx, []string{name}, []byte(name)))
		} else {
			must(t, "send", other.SendToUID(ctx, []string{name}, []byte(name)))
		}
		c.expect(name)
	}
}

// TestInterestSubscriptionsFollowMembership: leave, unbind, rebind and
// close drop the subscriptions they no longer need, on the gateway and on
// the NATS server; the group limit refuses a join beyond it.
func TestInterestSubscriptionsFollowMembership(t *testing.T) {
	tr := startTrio(t, gateway.Config{MaxGroups: 2})
	ctx := ctxFor(t, 30*time.Second)
	nc := tr.ncs[0]
	base := nc.NumSubscriptions()
	x, y := tr.dial(t, 0), tr.dial(t, 0)
	for _, step := range []struct {
		name string
		do   func() error
		want int
	}{
		{"x joins a", func() error { return tr.api.JoinGroup(ctx, x.id, "a") }, 1},
		{"y joins a", func() error { return tr.api.JoinGroup(ctx, y.id, "a") }, 1},
		{"x joins b", func() error { return tr.api.JoinGroup(ctx, x.id, "b") }, 2},
		{"x binds u", func() error { return tr.api.BindUID(ctx, x.id, "u") }, 3},
		{"y binds u", func() error { return tr.api.BindUID(ctx, y.id, "u") }, 3},
		{"x rebinds v", func() error { return tr.api.BindUID(ctx, x.id, "v") }, 4},
		{"x leaves b", func() error { return tr.api.LeaveGroup(ctx, x.id, "b") }, 3},
		{"y unbinds", func() error { return tr.api.UnbindUID(ctx, y.id) }, 2},
		{"x leaves a", func() error { return tr.api.LeaveGroup(ctx, x.id, "a") }, 2},
	} {
		must(t, step.name, step.do())
		if got := tr.gws[0].InterestStats().Subscriptions; got != step.want {
			t.Fatalf("after %s: %d subscriptions, want %d", step.name, got, step.want)
		}
		if got := nc.NumSubscriptions() - base; got != step.want {
			t.Fatalf("after %s: NATS connection has %d interest subscriptions, want %d", step.name, got, step.want)
		}
	}
	// MaxGroups 2: x is in none, y in a.
	must(t, "y joins b", tr.api.JoinGroup(ctx, y.id, "b"))
	if err := tr.api.JoinGroup(ctx, y.id, "c"); err == nil || !strings.Contains(err.Error(), "max_groups") {
		t.Fatalf("third join = %v, want a max_groups error", err)
	}
	must(t, "rejoin a", tr.api.JoinGroup(ctx, y.id, "a")) // already a member: not refused
	// Closing the clients drops everything (a, b; v), on the server too.
	if got := tr.gws[0].InterestStats().Subscriptions; got != 3 {
		t.Fatalf("%d subscriptions, want 3 (a, b, v)", got)
	}
	srvBefore := tr.e.NATS().NumSubscriptions()
	_ = x.c.Close()
	_ = y.c.Close()
	waitFor(t, 5*time.Second, "subscriptions gone after close", func() bool {
		return tr.gws[0].InterestStats().Subscriptions == 0 && nc.NumSubscriptions() == base
	})
	waitFor(t, 5*time.Second, "the NATS server to drop them", func() bool { return tr.e.NATS().NumSubscriptions() == srvBefore-3 })
	st := tr.gws[0].InterestStats()
	if st.Subscribes != st.Unsubscribes || st.Subscribes == 0 {
		t.Fatalf("subscribes %d, unsubscribes %d", st.Subscribes, st.Unsubscribes)
	}
}

// TestMembershipLeaveAndExpiry: a gateway that stops cleanly is dropped at
// once (its leaving heartbeat); one cut off the bus is reported missing by
// queries, then forgotten within membership.ExpiryIntervals heartbeat intervals
// (3 s with the default 1 s), well under 5 s.
func TestMembershipLeaveAndExpiry(t *testing.T) {
	tr := startTrio(t, gateway.Config{})
	ctx := ctxFor(t, 30*time.Second)
	ids := []string{tr.gws[0].ID(), tr.gws[1].ID(), tr.gws[2].ID()}
	slices.Sort(ids)
	waitFor(t, 5*time.Second, "all three gateways known", func() bool { return slices.Equal(tr.api.Members(), ids) })

	stopped := tr.gws[2].ID()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tr.gws[2].Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 5*time.Second, "the stopped gateway dropped", func() bool { return !slices.Contains(tr.api.Members(), stopped) })
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("stopped gateway dropped after %v; a leaving heartbeat should drop it at once", d)
	}
	n, err := tr.api.GetClientCount(ctx)
	if err != nil || n.Partial {
		t.Fatalf("GetClientCount after a clean stop = %+v, %v; want complete", n, err)
	}

	// Cut gateway 1 off the bus, as a crash would: no leaving heartbeat.
	dead := tr.gws[1].ID()
	tr.ncs[1].Close()
	start = time.Now()
	n, err = tr.api.GetClientCount(ctx)
	if err != nil || !n.Partial || !slices.Equal(n.Missing, []string{dead}) {
		t.Fatalf("GetClientCount right after the crash = %+v, %v; want partial, missing [%s]", n, err, dead)
	}
	waitFor(t, 6*time.Second, "the dead gateway expired", func() bool { return !slices.Contains(tr.api.Members(), dead) })
	took := time.Since(start)
	t.Logf("dead gateway expired %v after it went silent", took.Round(10*time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("dead gateway expired after %v, want ≤ 5s", took)
	}
	n, err = tr.api.GetClientCount(ctx)
	if err != nil || n.Partial {
		t.Fatalf("GetClientCount after expiry = %+v, %v; want complete", n, err)
	}
}

func sum(v []uint64) uint64 {
	var s uint64
	for _, x := range v {
		s += x
	}
	return s
}
