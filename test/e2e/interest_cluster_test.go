package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/testbus"
)

// startRoutedPair starts two nats-servers in one cluster, routed over
// 127.0.0.1, and returns them once the route is up.
func startRoutedPair(t *testing.T) (a, b *server.Server) {
	t.Helper()
	start := func(name string, routes []*url.URL) *server.Server {
		return testbus.StartServer(t, &server.Options{
			ServerName: name, Host: "127.0.0.1", Port: -1,
			Cluster: server.ClusterOpts{Name: "interest", Host: "127.0.0.1", Port: -1},
			Routes:  routes,
		})
	}
	a = start("a", nil)
	u, err := url.Parse("nats-route://" + a.ClusterAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = start("b", []*url.URL{u})
	waitFor(t, 10*time.Second, "the route", func() bool { return a.NumRoutes() > 0 && b.NumRoutes() > 0 })
	return a, b
}

// TestInterestAcrossRoutes: the gateway and its worker are on NATS server
// A; API clients on A and B. A send published on B right after a
// JoinGroup or BindUID answered over the route (the joiner is on B too)
// reaches the member: A sends the subscription to B before the answer, on
// the same route. When the answer does not cross that route (the joiner is
// on A, or the client saw a worker's greeting), B may not know of the
// subscription yet: the test measures that window (route propagation) and
// logs it; docs/bus-protocol.md documents it.
func TestInterestAcrossRoutes(t *testing.T) {
	srvA, srvB := startRoutedPair(t)
	connect := func(s *server.Server, name string) *api.Client {
		nc, err := bus.Connect(bus.Options{InProcess: s, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		c, err := api.New(nc, api.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	wc, err := bus.Connect(bus.Options{InProcess: srvA, Name: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wc.Close)
	startIDWorker(t, wc)
	gnc, err := bus.Connect(bus.Options{InProcess: srvA, Name: "gw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gnc.Close)
	gw, err := gateway.New(gnc, gateway.Config{Logger: testLogger(t),
		Listeners: []gateway.ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
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
	onA, onB := connect(srvA, "api-a"), connect(srvB, "api-b")
	ctx := ctxFor(t, 60*time.Second)
	nc, err := net.Dial("tcp", gw.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &lineClient{t: t, c: nc, r: bufio.NewReader(nc)}
	c.id = c.read()
	// An API client knows a gateway from its heartbeats: B's may not
	// have heard one yet (its subscription crosses the route first).
	for _, a := range []*api.Client{onA, onB} {
		waitFor(t, 10*time.Second, "the API clients to know the gateway", func() bool {
			on, err := a.IsOnline(ctx, c.id)
			return err == nil && on
		})
	}

	// The answer crosses the route: no window.
	for i := range 100 {
		name := fmt.Sprintf("via-b-%d", i)
		if i%2 == 0 {
			must(t, "join", onB.JoinGroup(ctx, c.id, name))
			must(t, "send", onB.SendToGroup(ctx, []string{name}, []byte(name)))
		} else {
			must(t, "bind", onB.BindUID(ctx, c.id, name))
			must(t, "send", onB.SendToUID(ctx, []string{name}, []byte(name)))
		}
		c.expect(name)
	}

	// The answer stays on A: how long until B has the subscription.
	subj := bus.Subjects{Prefix: bus.DefaultPrefix}
	accB := srvB.GlobalAccount()
	var worst, total time.Duration
	const n = 100
	for i := range n {
		name := fmt.Sprintf("via-a-%d", i)
		if i%2 == 0 {
			c.send("join " + name)
			c.expect("ok " + name)
		} else {
			must(t, "join", onA.JoinGroup(ctx, c.id, name))
		}
		start := time.Now()
		for !accB.SubscriptionInterest(subj.Group(name)) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("server B never learned of %s", subj.Group(name))
			}
		}
		d := time.Since(start)
		worst, total = max(worst, d), total+d
	}
	t.Logf("route propagation window after the answer (server B learns of the subscription): mean %v, worst %v over %d joins",
		(total / n).Round(time.Microsecond), worst.Round(time.Microsecond), n)
}
