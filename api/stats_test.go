package api_test

import (
	"context"
	"slices"
	"testing"

	"github.com/gatework/gatework/api"
)

// TestGetStats checks that GetStats merges the gateways' answers: sorted
// gateways, summed totals, workers merged by id with the process details
// of the gateway that runs them, and a gateway whose answer does not
// decode reported as missing.
func TestGetStats(t *testing.T) {
	cl := newCluster(t, api.Config{}, gw1, gw2, gw3)
	cl.gs[0].add("u1")
	cl.gs[0].add("u2")
	cl.gs[1].add("u3")
	cl.gs[2].set(func(g *fakeGW) { g.stats = []byte("{not json") })
	st, err := cl.c.GetStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Partial || !slices.Equal(st.Missing, []string{gw3}) {
		t.Errorf("coverage %+v, want gw3 missing", st.Coverage)
	}
	var ids []string
	for _, g := range st.Gateways {
		ids = append(ids, g.Gateway)
	}
	if !slices.Equal(ids, []string{gw1, gw2}) {
		t.Errorf("gateways %v", ids)
	}
	want := api.StatsTotals{Gateways: 2, Workers: 1, Connections: 3, MessagesIn: 30}
	if st.Totals != want {
		t.Errorf("totals %+v, want %+v", st.Totals, want)
	}
	if len(st.Workers) != 1 {
		t.Fatalf("workers %+v", st.Workers)
	}
	if w := st.Workers[0]; w.ID != "w-a" || w.Events != 4 || w.Batches != 2 || w.PID != 42 || w.Bus != "CONNECTED" {
		t.Errorf("worker %+v", w)
	}
	if st.TimeUnixMs <= 0 {
		t.Errorf("time %d", st.TimeUnixMs)
	}
}

// TestGetStatsSwooleFields: GetStats sums closed, events acked and in
// flight, counts the workers by state and the user processes (failing
// ones too), names each process's gateway, and sums task counters when a
// gateway has them.
func TestGetStatsSwooleFields(t *testing.T) {
	cl := newCluster(t, api.Config{}, gw1, gw2)
	cl.gs[0].set(func(g *fakeGW) {
		g.stats = []byte(`{"gateway":"` + gw1 + `","closed":4,"events_acked":10,"in_flight":2,"dispatch":"uid",` +
			`"workers":[{"id":"w-a","events":5,"pid":42,"state":"busy","busy":2}],` +
			`"processes":[{"name":"pusher","pid":50,"ready":true},{"name":"crasher","pid":51,"failing":true,"restarts":4}],` +
			`"tasks":{"queued":3,"in_flight":1}}`)
	})
	cl.gs[1].set(func(g *fakeGW) {
		g.stats = []byte(`{"gateway":"` + gw2 + `","closed":1,"events_acked":1,"in_flight":0,` +
			`"workers":[{"id":"w-b","events":1,"pid":43,"state":"idle"}],"processes":[]}`)
	})
	st, err := cl.c.GetStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tt := st.Totals
	if tt.Closed != 5 || tt.EventsAcked != 11 || tt.InFlight != 2 || tt.WorkersBusy != 1 || tt.WorkersIdle != 1 ||
		tt.Processes != 2 || tt.ProcessesFailing != 1 || tt.Tasks == nil || tt.Tasks.Queued != 3 || tt.Tasks.InFlight != 1 {
		t.Errorf("totals %+v (tasks %+v)", tt, tt.Tasks)
	}
	if len(st.Processes) != 2 || st.Processes[0].Name != "crasher" || st.Processes[0].Gateway != gw1 || !st.Processes[0].Failing {
		t.Errorf("processes %+v", st.Processes)
	}
	if st.Gateways[0].Dispatch != "uid" || st.Workers[0].State != "busy" || st.Workers[0].Busy != 2 {
		t.Errorf("gateway %+v, workers %+v", st.Gateways[0], st.Workers)
	}
}
