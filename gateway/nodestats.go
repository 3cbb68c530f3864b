package gateway

import (
	"cmp"
	"encoding/json"
	"os"
	"slices"
	"time"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/procstat"
)

// processStats answers bus.OpStats: this gateway's process and traffic
// counters and the workers it knows, as the JSON object bus.GatewayStats.
// It costs one pass over the shards (the uid and group sets are built to
// count them), like Stats.
func (s *Server) processStats(now time.Time) ([]byte, error) {
	st := s.Stats()
	pid := os.Getpid()
	rss, _ := procstat.RSS(pid) // 0 where unknown, as documented
	gs := bus.GatewayStats{
		Gateway:       s.id,
		PID:           pid,
		StartedUnixMs: s.started.UnixMilli(),
		NowUnixMs:     now.UnixMilli(),
		RSSBytes:      rss,
		Bus:           s.nc.Status().String(),
		Connections:   st.Connections,
		UIDs:          st.UIDs,
		Groups:        st.Groups,
		MessagesIn:    st.MessagesIn,
		MessagesOut:   st.MessagesOut,
		BytesIn:       st.BytesIn,
		BytesOut:      st.BytesOut,
		Accepted:      st.Accepted,
		Closed:        sumValues(st.Closes),
		EventsSent:    st.EventsSent,
		InFlight:      st.InFlight,
		Redelivered:   st.Redelivered,
		QueuedBytes:   st.QueuedBytes,
		Dispatch:      s.cfg.Dispatch,
	}
	if gs.Dispatch == "" {
		gs.Dispatch = DispatchClient
	}
	for _, w := range st.Workers {
		gs.EventsAcked += w.Events
	}
	byID := make(map[string]int, len(st.Workers))
	for id, w := range st.Workers {
		byID[id] = len(gs.Workers)
		gs.Workers = append(gs.Workers, bus.WorkerStats{ID: id, Batches: w.Batches, Events: w.Events})
	}
	if s.cfg.LocalWorkers != nil {
		for _, lw := range s.cfg.LocalWorkers() {
			i, ok := byID[lw.ID]
			if !ok {
				byID[lw.ID] = len(gs.Workers)
				gs.Workers = append(gs.Workers, lw)
				continue
			}
			w := &gs.Workers[i]
			w.PID, w.StartedUnixMs, w.RSSBytes, w.Bus, w.Handled = lw.PID, lw.StartedUnixMs, lw.RSSBytes, lw.Bus, lw.Handled
			w.State, w.Busy = lw.State, lw.Busy
		}
	}
	for _, w := range gs.Workers {
		switch w.State {
		case WorkerBusy:
			gs.WorkersBusy++
		case WorkerIdle:
			gs.WorkersIdle++
		}
	}
	if s.cfg.LocalProcesses != nil {
		gs.Processes = s.cfg.LocalProcesses()
	}
	if gs.Processes == nil {
		gs.Processes = []bus.ProcessStats{}
	}
	if s.cfg.LocalTasks != nil {
		gs.Tasks = s.cfg.LocalTasks()
	}
	slices.SortFunc(gs.Workers, func(a, b bus.WorkerStats) int { return cmp.Compare(a.ID, b.ID) })
	if gs.Workers == nil {
		gs.Workers = []bus.WorkerStats{}
	}
	return json.Marshal(gs)
}

// The values of bus.WorkerStats.State.
const (
	WorkerBusy = "busy" // handlers run now
	WorkerIdle = "idle" // none does
)

// sumValues returns the sum of m's values.
func sumValues(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
