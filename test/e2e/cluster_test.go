package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestTwoGateways runs two nodes on one bus (the second joins the first's
// embedded NATS), each with its own in-process worker, and checks the
// cluster-wide API from both sides, through Go and HTTP: counts and lists
// merged across gateways (unique and not), client-addressed calls routed
// to the owning gateway, fan-out reaching both, and a gateway that leaves.
func TestTwoGateways(t *testing.T) {
	n1 := startCluster(t, clusterConfig{app: &testapp.Config{}, processes: true})
	n2 := startCluster(t, clusterConfig{app: &testapp.Config{}, natsURL: n1.n.NATSURL()})
	gw1, gw2 := n1.n.Gateway().ID(), n2.n.Gateway().ID()
	a1, a2 := n1.dial(t, "ws"), n1.dial(t, "tcp")
	b1, b2 := n2.dial(t, "ws"), n2.dial(t, "tcp")
	all := []*client{a1, a2, b1, b2}
	a1.send("/bind ua")
	b1.send("/bind ua")
	a2.send("/bind ub")
	for _, c := range []*client{a1, b1, b2} {
		c.send("/join room")
	}
	for _, c := range all {
		c.who()
	}
	ctx := ctxFor(t, 50*time.Second)
	// Each API client knows the other gateway from its heartbeats.
	for _, n := range []*cluster{n1, n2} {
		waitFor(t, 10*time.Second, "both gateways to answer", func() bool {
			c, err := n.n.API().GetClientCount(ctx)
			return err == nil && c.Value == 4 && !c.Partial
		})
	}

	for _, side := range []struct {
		name string
		n    *cluster
		a    api.API
	}{
		{"node1/go", n1, n1.n.API()}, {"node2/go", n2, n2.n.API()},
		{"node1/http", n1, httpAPI{c: n1}}, {"node2/http", n2, httpAPI{c: n2}},
	} {
		a := side.a
		checkCount(t, side.name+" GetClientCount", func() (api.Count, error) { return a.GetClientCount(ctx) }, 4)
		checkCount(t, side.name+" GetClientCountByGroup room", func() (api.Count, error) { return a.GetClientCountByGroup(ctx, "room") }, 3)
		checkList(t, side.name+" GetClientList", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientList(ctx, pr) }, 1), idsOf(all...))
		checkList(t, side.name+" GetClientListByGroup", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByGroup(ctx, "room", pr) }, 2), idsOf(a1, b1, b2))
		checkList(t, side.name+" GetClientListByUID ua", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByUID(ctx, "ua", pr) }, 1), idsOf(a1, b1))
		checkList(t, side.name+" GetUIDList unique", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetUIDList(ctx, true, pr) }, 1), []string{"ua", "ub"})
		checkList(t, side.name+" GetGroupList unique", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetGroupList(ctx, true, pr) }, 1), []string{"room"})
		// Not unique: each gateway's distinct items, merged.
		if pg, err := a.GetUIDList(ctx, false, api.PageRequest{}); err != nil || !slices.Equal(pg.Items, []string{"ua", "ua", "ub"}) || pg.NextCursor != "" || pg.Partial {
			t.Fatalf("%s GetUIDList unique=false = %+v, %v; want ua ua ub", side.name, pg, err)
		}
		if pg, err := a.GetGroupList(ctx, false, api.PageRequest{}); err != nil || !slices.Equal(pg.Items, []string{"room", "room"}) || pg.Partial {
			t.Fatalf("%s GetGroupList unique=false = %+v, %v; want room room", side.name, pg, err)
		}
		if pg, err := a.GetUIDListByGroup(ctx, "room", false, api.PageRequest{}); err != nil || !slices.Equal(pg.Items, []string{"ua", "ua"}) || pg.Partial {
			t.Fatalf("%s GetUIDListByGroup room unique=false = %+v, %v; want ua ua", side.name, pg, err)
		}
		// Walked in pages of one, the copies of an item stay together.
		if got := walkDup(t, func(pr api.PageRequest) (api.Page, error) { return a.GetUIDList(ctx, false, pr) }, 1); !slices.Equal(got, []string{"ua", "ua", "ub"}) {
			t.Fatalf("%s GetUIDList unique=false in pages of 1 = %q; want ua ua ub", side.name, got)
		}
		checkCount(t, side.name+" GetUIDCount exact", func() (api.Count, error) { return a.GetUIDCount(ctx, 0) }, 2)
		checkCount(t, side.name+" GetUIDCount 1", func() (api.Count, error) { return a.GetUIDCount(ctx, 1) }, 3) // 2 + 1
		checkCount(t, side.name+" GetUIDCountByGroup room", func() (api.Count, error) { return a.GetUIDCountByGroup(ctx, "room") }, 1)
		if b, err := a.IsUIDOnline(ctx, "ub"); err != nil || !b.Value {
			t.Fatalf("%s IsUIDOnline ub = %+v, %v", side.name, b, err)
		}
		// Client-addressed calls reach the owning gateway.
		for _, c := range all {
			info, err := a.GetClientInfo(ctx, c.id, api.FieldSystem|api.FieldUID)
			wantGW := gw1
			if c == b1 || c == b2 {
				wantGW = gw2
			}
			if err != nil || info.System == nil || info.System.Gateway != wantGW {
				t.Fatalf("%s GetClientInfo %s = %s, %v; want gateway %s", side.name, c.id, jsonOf(info), err, wantGW)
			}
		}
		must(t, "SetSession b2", a.SetSession(ctx, b2.id, api.Session{"from": side.name}))
		checkWho(t, b2, "", []string{"room"}, api.Session{"from": side.name})
		cs, err := a.GetClientSessionsByGroup(ctx, "room")
		if err != nil || cs.Partial || len(cs.Sessions) != 3 || !jsonEq(cs.Sessions[b2.id], api.Session{"from": side.name}) {
			t.Fatalf("%s GetClientSessionsByGroup room = %+v, %v", side.name, cs, err)
		}
		// Fan-out reaches both gateways, each connection once.
		fanouts := []struct {
			name string
			send func(m []byte) error
			want []*client
		}{
			{"SendToUID ua", func(m []byte) error { return a.SendToUID(ctx, []string{"ua"}, m) }, []*client{a1, b1}},
			{"SendToGroup room without b1", func(m []byte) error { return a.SendToGroup(ctx, []string{"room"}, m, b1.id) }, []*client{a1, b2}},
			{"SendToAll without a2", func(m []byte) error { return a.SendToAll(ctx, m, a2.id) }, []*client{a1, b1, b2}},
		}
		for i, f := range fanouts {
			msg := fmt.Sprintf("%s fanout-%d", side.name, i)
			must(t, f.name, f.send([]byte(msg)))
			marker := fmt.Sprintf("%s marker-%d", side.name, i)
			must(t, "SendToAll marker", a.SendToAll(ctx, []byte(marker)))
			for _, c := range all {
				var want []string
				if slices.Contains(f.want, c) {
					want = []string{msg}
				}
				if got := c.until(marker); !slices.Equal(got, want) {
					t.Fatalf("%s %s: client %s got %q, want %q", side.name, f.name, c.id, got, want)
				}
			}
		}
	}

	// A handler on one gateway reaches a client of the other.
	must(t, "BindUID b2", n1.n.API().BindUID(ctx, b2.id, "uc"))
	a1.send("/tell uc across")
	b2.expect("across")

	// A gateway that leaves: its clients are offline, the answers come
	// from the other gateway alone and are not partial.
	if err := n2.n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a := n1.n.API()
	waitFor(t, 10*time.Second, "node2 to leave", func() bool {
		c, err := a.GetClientCount(ctx)
		return err == nil && c.Value == 2 && !c.Partial
	})
	if ok, err := a.IsOnline(ctx, b1.id); err != nil || ok {
		t.Fatalf("IsOnline of a client of the stopped gateway = %v, %v", ok, err)
	}
	if _, err := a.GetClientInfo(ctx, b1.id, api.FieldAll); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("GetClientInfo of a client of the stopped gateway: %v, want ErrNotFound", err)
	}
	checkList(t, "GetClientList after node2 left", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientList(ctx, pr) }, 1), idsOf(a1, a2))
}

// walkDup walks a list that may hold copies of an item (unique=false): a
// page may then exceed the limit by copies of its last item, but the next
// page starts after it.
func walkDup(t *testing.T, page func(api.PageRequest) (api.Page, error), limit int) []string {
	t.Helper()
	var out []string
	cursor := ""
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatalf("pagination does not end: %d pages", i)
		}
		pg, err := page(api.PageRequest{Cursor: cursor, Limit: limit})
		if err != nil || pg.Partial {
			t.Fatalf("page %d (cursor %q): %+v, %v", i, cursor, pg, err)
		}
		if !slices.IsSorted(pg.Items) || (len(out) > 0 && len(pg.Items) > 0 && pg.Items[0] <= out[len(out)-1]) {
			t.Fatalf("page %d: %q after %q: not ascending", i, pg.Items, out)
		}
		if n := len(pg.Items); n > limit && pg.Items[limit-1] != pg.Items[n-1] {
			t.Fatalf("page %d: %q: more than %d items, and not copies of the last", i, pg.Items, limit)
		}
		out = append(out, pg.Items...)
		if pg.NextCursor == "" {
			return out
		}
		cursor = pg.NextCursor
	}
}

// TestPaginationUnderChurn walks GetClientList and GetClientListByGroup
// in pages of 7, through the Go client and over HTTP, while other
// goroutines keep connecting and closing clients: every client connected
// the whole walk appears exactly once, and no id repeats.
func TestPaginationUnderChurn(t *testing.T) {
	const room = "room"
	cl := startCluster(t, clusterConfig{app: &testapp.Config{AutoJoin: room}})
	stable := cl.dialMany(t, "mix", 40) // /who answered: each is in room
	stableIDs := idsOf(stable...)

	ctx, cancel := context.WithCancel(ctxFor(t, 50*time.Second))
	var churned atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 150; i++ {
				if churn(cl, g%2 == 0, time.Duration(i%5)*time.Millisecond) {
					churned.Add(1)
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	lists := []struct {
		name string
		page func(a api.API) func(api.PageRequest) (api.Page, error)
	}{
		{"GetClientList", func(a api.API) func(api.PageRequest) (api.Page, error) {
			return func(pr api.PageRequest) (api.Page, error) { return a.GetClientList(ctx, pr) }
		}},
		{"GetClientListByGroup", func(a api.API) func(api.PageRequest) (api.Page, error) {
			return func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByGroup(ctx, room, pr) }
		}},
	}
	apis := []struct {
		name string
		a    api.API
	}{{"go", cl.n.API()}, {"http", httpAPI{c: cl}}}
	sawChurner := false
	for round := range 3 {
		for _, l := range lists {
			for _, via := range apis {
				got := walk(t, l.page(via.a), 7) // ascending: no repeats
				seen := make(map[string]bool, len(got))
				for _, id := range got {
					seen[id] = true
				}
				for _, id := range stableIDs {
					if !seen[id] {
						t.Fatalf("round %d, %s via %s: stable client %s missing from %d ids", round, l.name, via.name, id, len(got))
					}
				}
				if len(got) > len(stableIDs) {
					sawChurner = true
				}
			}
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d clients came and went during the walks", churned.Load())
	if churned.Load() == 0 || !sawChurner {
		t.Fatalf("no churn seen during the walks (churned %d, seen in a walk %v)", churned.Load(), sawChurner)
	}
}

// churn connects one client (WebSocket or TCP), keeps it for stay, and
// closes it. It reports whether the connection was made. It runs on a
// goroutine other than the test's: it never fails the test.
func churn(cl *cluster, ws bool, stay time.Duration) bool {
	var closer func()
	if ws {
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
		c, resp, err := d.Dial(cl.wsURL(), nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return false
		}
		closer = func() { _ = c.Close() }
	} else {
		c, err := net.DialTimeout("tcp", cl.tcpAddr(), 5*time.Second)
		if err != nil {
			return false
		}
		closer = func() { _ = c.Close() }
	}
	time.Sleep(stay) // pacing: how long the client stays, not synchronization
	closer()
	return true
}

// TestGatewayKilled: a gateway in another process is killed with SIGKILL.
// Cluster-wide queries do not fail or hang: until its heartbeats are
// overdue the dead gateway is reported missing (partial), then it is gone;
// calls addressed to its clients say offline or not found; the surviving
// gateway's clients are unaffected.
func TestGatewayKilled(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}, processes: true})
	p := cl.startWorker(t, "-gateway")
	line, _ := p.out.line("gateway ")
	f := strings.Fields(line) // gateway <id> <ws addr> <tcp addr>
	if len(f) != 4 {
		t.Fatalf("testworker -gateway printed %q", line)
	}
	deadGW, wsAddr := f[1], f[2]
	local := cl.dial(t, "tcp")
	local.who()
	var remote []*client
	for range 2 {
		c, _, err := dialWSURL(t, "ws://"+wsAddr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if w := c.who(); w.Gateway != deadGW { // served by this process's worker
			t.Fatalf("remote client on gateway %q, want %s", w.Gateway, deadGW)
		}
		remote = append(remote, c)
	}
	a := cl.n.API()
	ctx := ctxFor(t, 50*time.Second)
	waitFor(t, 10*time.Second, "both gateways to answer", func() bool {
		n, err := a.GetClientCount(ctx)
		return err == nil && n.Value == 3 && !n.Partial
	})

	p.kill()
	start := time.Now()
	n, err := a.GetClientCount(ctx)
	took := time.Since(start)
	if err != nil || n.Value != 1 || !n.Partial || !slices.Equal(n.Missing, []string{deadGW}) {
		t.Fatalf("GetClientCount right after the kill = %+v, %v; want 1, partial, missing [%s]", n, err, deadGW)
	}
	if took > api.DefaultQueryTimeout+2*time.Second {
		t.Fatalf("GetClientCount took %v; the query timeout is %v", took, api.DefaultQueryTimeout)
	}
	pg, err := a.GetClientList(ctx, api.PageRequest{})
	if err != nil || !slices.Equal(pg.Items, []string{local.id}) {
		t.Fatalf("GetClientList with a dead gateway = %+v, %v", pg, err)
	}
	for _, c := range remote {
		if f, _ := c.expectClosed(); f.code != websocket1006 {
			t.Fatalf("client of the killed gateway: %v, want an abnormal closure", f)
		}
		if ok, err := a.IsOnline(ctx, c.id); err != nil || ok {
			t.Fatalf("IsOnline client of the dead gateway = %v, %v", ok, err)
		}
		if _, err := a.GetClientInfo(ctx, c.id, api.FieldAll); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("GetClientInfo client of the dead gateway: %v, want ErrNotFound", err)
		}
		must(t, "SendToClient client of the dead gateway", a.SendToClient(ctx, c.id, []byte("lost")))
	}
	waitFor(t, 10*time.Second, "the dead gateway to be forgotten (3 heartbeat intervals)", func() bool {
		n, err := a.GetClientCount(ctx)
		return err == nil && n.Value == 1 && !n.Partial
	})
	local.send("still here")
	local.expect("still here")
}
