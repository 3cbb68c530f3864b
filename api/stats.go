package api

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/gatework/gatework/bus"
)

// GatewayStats is one gateway's process and traffic counters, as it
// answers a stats query (see bus.GatewayStats for every field).
type GatewayStats = bus.GatewayStats

// WorkerStats is what the gateways know of one worker (see
// bus.WorkerStats). In Stats.Workers the batch and event counts are summed
// over the gateways that answered.
type WorkerStats = bus.WorkerStats

// ProcessStats is a user process of a gateway's node (see
// bus.ProcessStats).
type ProcessStats = bus.ProcessStats

// Stats is the answer of GetStats: every live gateway's counters, the
// workers they know, and the cluster's totals. It is meant to be polled:
// counters only grow, so two answers give rates. Field names are the JSON
// keys of the HTTP API's getStats.
type Stats struct {
	// TimeUnixMs is when the answer was assembled (the caller's clock).
	TimeUnixMs int64 `json:"time_unix_ms"`
	// Totals sums the gateways that answered.
	Totals StatsTotals `json:"totals"`
	// Gateways are the answers, sorted by gateway id.
	Gateways []GatewayStats `json:"gateways"`
	// Workers are the workers the gateways named, by id (sorted), their
	// counts summed over the gateways and their process details taken from
	// the gateway whose node runs them.
	Workers []WorkerStats `json:"workers"`
	// Processes are the user processes of the gateways' nodes, with
	// their gateway, sorted by gateway and name.
	Processes []ProcessStats `json:"processes"`
	// Coverage names the gateways that did not answer in time.
	Coverage `json:"-"`
}

// StatsTotals are the sums of the gateways' counters. UIDs and Groups sum
// each gateway's distinct count, so a uid or group present on two
// gateways counts twice: GetUIDCount is the exact (and dearer) count.
type StatsTotals struct {
	Gateways    int    `json:"gateways"`
	Workers     int    `json:"workers"`
	Connections int    `json:"connections"`
	UIDs        int    `json:"uids"`
	Groups      int    `json:"groups"`
	MessagesIn  uint64 `json:"messages_in"`
	MessagesOut uint64 `json:"messages_out"`
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
	Accepted    uint64 `json:"accepted"`
	Closed      uint64 `json:"closed"`
	EventsSent  uint64 `json:"events_sent"`
	EventsAcked uint64 `json:"events_acked"`
	InFlight    int    `json:"in_flight"`
	// WorkersBusy and WorkersIdle count the workers whose state the
	// gateways know (those their nodes run), by state.
	WorkersBusy int `json:"workers_busy"`
	WorkersIdle int `json:"workers_idle"`
	// Processes and ProcessesFailing count the user processes, and those
	// of them that are failing (backed off).
	Processes        int `json:"processes"`
	ProcessesFailing int `json:"processes_failing"`
	// Tasks sums the task counters of the gateways' nodes (absent when
	// none runs task workers).
	Tasks *bus.TaskStats `json:"tasks,omitempty"`
}

// GetStats asks every live gateway for its counters (scatter-gather, like
// the counts: a gateway that does not answer within the query timeout is
// reported in Coverage, never an error). It fails only as the counts do:
// ctx canceled, the Client closed, or NATS refusing the publish.
func (c *Client) GetStats(ctx context.Context) (Stats, error) {
	cmd := bus.Command{Version: bus.Version, Op: bus.OpStats}
	var gws []GatewayStats
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		var gs GatewayStats
		if err := json.Unmarshal(r.Stats, &gs); err != nil {
			return false, fmt.Errorf("stats: %w", err)
		}
		if gs.Gateway != r.Gateway {
			return false, fmt.Errorf("stats of gateway %q in a reply of %q", gs.Gateway, r.Gateway)
		}
		gws = append(gws, gs)
		return false, nil
	})
	if err != nil {
		return Stats{}, err
	}
	st := mergeStats(gws, time.Now())
	st.Coverage = cov
	return st, nil
}

// mergeStats sorts the gateways' answers and sums them.
func mergeStats(gws []GatewayStats, now time.Time) Stats {
	slices.SortFunc(gws, func(a, b GatewayStats) int { return cmp.Compare(a.Gateway, b.Gateway) })
	st := Stats{TimeUnixMs: now.UnixMilli(), Gateways: gws, Workers: []WorkerStats{}, Processes: []ProcessStats{}}
	if st.Gateways == nil {
		st.Gateways = []GatewayStats{}
	}
	workers := map[string]*WorkerStats{}
	t := &st.Totals
	for i := range gws {
		g := &gws[i]
		t.Gateways++
		t.Connections += g.Connections
		t.UIDs += g.UIDs
		t.Groups += g.Groups
		t.MessagesIn = addSat(t.MessagesIn, g.MessagesIn)
		t.MessagesOut = addSat(t.MessagesOut, g.MessagesOut)
		t.BytesIn = addSat(t.BytesIn, g.BytesIn)
		t.BytesOut = addSat(t.BytesOut, g.BytesOut)
		t.Accepted = addSat(t.Accepted, g.Accepted)
		t.EventsSent = addSat(t.EventsSent, g.EventsSent)
		t.Closed = addSat(t.Closed, g.Closed)
		t.EventsAcked = addSat(t.EventsAcked, g.EventsAcked)
		t.InFlight += g.InFlight
		if g.Tasks != nil {
			if t.Tasks == nil {
				t.Tasks = &bus.TaskStats{}
			}
			t.Tasks.Queued = addSat(t.Tasks.Queued, g.Tasks.Queued)
			t.Tasks.InFlight = addSat(t.Tasks.InFlight, g.Tasks.InFlight)
		}
		for _, p := range g.Processes {
			p.Gateway = g.Gateway
			st.Processes = append(st.Processes, p)
			t.Processes++
			if p.Failing {
				t.ProcessesFailing++
			}
		}
		for _, w := range g.Workers {
			m := workers[w.ID]
			if m == nil {
				m = &WorkerStats{ID: w.ID}
				workers[w.ID] = m
			}
			m.Batches = addSat(m.Batches, w.Batches)
			m.Events = addSat(m.Events, w.Events)
			if w.PID != 0 && m.PID == 0 {
				m.PID, m.StartedUnixMs, m.RSSBytes, m.Bus, m.Handled = w.PID, w.StartedUnixMs, w.RSSBytes, w.Bus, w.Handled
				m.State, m.Busy = w.State, w.Busy
			}
		}
	}
	for _, w := range workers {
		st.Workers = append(st.Workers, *w)
	}
	slices.SortFunc(st.Workers, func(a, b WorkerStats) int { return cmp.Compare(a.ID, b.ID) })
	t.Workers = len(st.Workers)
	for _, w := range st.Workers {
		switch w.State {
		case "busy":
			t.WorkersBusy++
		case "idle":
			t.WorkersIdle++
		}
	}
	slices.SortStableFunc(st.Processes, func(a, b ProcessStats) int {
		return cmp.Or(cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.Name, b.Name))
	})
	return st
}
