package e2e

import (
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/worker"
)

// snakeKey is the shape of every JSON key of getStats.
var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkKeys fails for any key of v (decoded JSON) not in snake_case, and
// collects the keys seen (with their paths).
func checkKeys(t *testing.T, path string, v any, seen map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !snakeKey.MatchString(k) {
				t.Errorf("getStats key %s.%s is not snake_case", path, k)
			}
			seen[path+"."+k] = true
			checkKeys(t, path+"."+k, e, seen)
		}
	case []any:
		for _, e := range x {
			checkKeys(t, path+"[]", e, seen)
		}
	}
}

// TestGetStatsSwooleFields: getStats, over Go and HTTP, has what Swoole's
// stats() gives (start time, connections now, accepted and closed totals,
// workers with their state, events and messages in and out, dispatch
// mode, user processes) in snake_case everywhere.
func TestGetStatsSwooleFields(t *testing.T) {
	p := &uidProbe{seen: map[string][]int{}}
	h := p.handlers()
	// An OnClose and an OnConnect, so that the close and connect events
	// are sent (a worker without them would have the gateway leave them
	// out once it announced itself).
	h.OnClose = func(*worker.Context) {}
	h.OnConnect = func(*worker.Context) {}
	c := startCluster(t, clusterConfig{handlers: h, dispatch: gateway.DispatchUID})
	runUIDClients(t, c, 5) // 3 clients, closed when it returns
	waitFor(t, 10*time.Second, "the closes counted", func() bool {
		st, err := c.n.API().GetStats(ctxFor(t, 5*time.Second))
		return err == nil && st.Totals.Closed == 3
	})
	// One client stays.
	conn, err := net.Dial("tcp", c.tcpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 4 connects, 3 binds, 15 seqs, 3 closes.
	const events = 25
	waitFor(t, 10*time.Second, "the connection counted, every event acknowledged", func() bool {
		st, err := c.n.API().GetStats(ctxFor(t, 5*time.Second))
		return err == nil && len(st.Gateways) == 1 && st.Gateways[0].Connections == 1 &&
			st.Gateways[0].EventsAcked == events && st.Gateways[0].InFlight == 0
	})

	st, err := c.n.API().GetStats(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	g := st.Gateways[0]
	tot := st.Totals
	if g.StartedUnixMs <= 0 || g.Connections != 1 || g.Accepted != 4 || g.Closed != 3 || g.Dispatch != "uid" ||
		g.MessagesIn != 18 || g.MessagesOut != 18 || g.EventsSent == 0 || g.EventsAcked != events || g.InFlight != 0 {
		t.Errorf("gateway stats %+v", g)
	}
	if tot.Closed != 3 || tot.Accepted != 4 || tot.Connections != 1 || tot.EventsAcked != g.EventsAcked ||
		tot.WorkersIdle+tot.WorkersBusy != 1 || tot.Processes != 0 {
		t.Errorf("totals %+v", tot)
	}
	if len(st.Workers) != 1 || (st.Workers[0].State != "idle" && st.Workers[0].State != "busy") {
		t.Errorf("workers %+v", st.Workers)
	}

	rep, err := c.post(ctxFor(t, 5*time.Second), "getStats", "", "{}")
	if err != nil || rep.Status != 200 {
		t.Fatalf("POST getStats: %v %d %s", err, rep.Status, rep.Body)
	}
	var body map[string]any
	if err := json.Unmarshal(rep.Body, &body); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	checkKeys(t, "", body, seen)
	for _, k := range []string{
		".result.totals.closed", ".result.totals.workers_idle", ".result.totals.workers_busy",
		".result.totals.events_acked", ".result.totals.processes", ".result.totals.processes_failing",
		".result.gateways[].started_unix_ms", ".result.gateways[].closed", ".result.gateways[].dispatch",
		".result.gateways[].events_acked", ".result.gateways[].in_flight", ".result.gateways[].processes",
		".result.workers[].state", ".result.processes",
	} {
		if !seen[k] {
			var keys []string
			for s := range seen {
				keys = append(keys, s)
			}
			t.Errorf("getStats over HTTP has no %s; it has %s", k, strings.Join(keys, " "))
		}
	}
}
