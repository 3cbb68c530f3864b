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
