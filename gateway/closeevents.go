package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// Close, connect and WebSocket connect events are the events a gateway may
// leave out: when no worker has a close handler a close event is a bus
// round trip (publish, decode, ack, bookkeeping) that changes nothing, with
// no OnConnect a connect event is the same (and wakes every worker process
// for each client of an idle wave), and with no OnWebSocketConnect the
// upgrade request (its path, host and headers, copied, encoded and
// decoded) is work for nobody. Worker processes say in their announcements
// (bus.WorkerInfo.NoClose, NoConnect and NoWebSocketConnect on
// Subjects.WorkerAnnounce, every two seconds and at start and stop) which
// of the three handlers they lack; the gateway
// listens, and leaves such events out while
//
//   - it knows of at least one live event worker,
//   - every live event worker it knows of lacks that handler, and
//   - no ack ever came from a worker it has no announcement of (a worker
//     that does not announce itself, such as one written in another
//     language against the bus protocol, or the webhook bridge: it may
//     have a close handler). After one such ack every close event is
//     sent for the rest of the gateway's life.
//
// Every other event is sent as before, in order and at least once. A
// worker with the handler that starts while such events are left out gets
// them from its announcement on (its hello comes before it subscribes to
// the events subject, but reaches the gateway a bus hop later: an event
// in that hop can still be left out). A listener with upgrade_hook always
// sends its WebSocket connect event (the worker's answer decides the
// upgrade) and the connect event after it.

// Bounds of the worker table: announcements of more than maxAnnounced
// event workers turn skipping off (every close event is sent); an entry
// expires three announcement intervals (at least minAnnounceInterval
// each) after it was last heard from.
const (
	maxAnnounced        = 4096
	minAnnounceInterval = 100 * time.Millisecond
)

// closeSkip tracks the event workers' announcements; skip, skipWS and
// skipConn are the answers closed, the WebSocket upgrade and register read
// on every client.
type closeSkip struct {
	skip     atomic.Bool // no close event is sent
	skipWS   atomic.Bool // no WebSocket connect event is sent
	skipConn atomic.Bool // no connect event is sent
	// soonest is when the first live worker expires (unix nanoseconds):
	// until then the three flags hold without a look at the table.
	soonest atomic.Int64

	mu      sync.Mutex
	workers map[string]announced // live event workers by id
	// unannounced is set for good by an ack from a worker without an
	// announcement.
	unannounced bool
}

// announced is what an event worker last said of itself.
type announced struct {
	noClose bool
	noWS    bool  // no OnWebSocketConnect
	noConn  bool  // no OnConnect
	expires int64 // unix nanoseconds
}

// subscribeAnnouncements starts listening to the workers' announcements.
func (s *Server) subscribeAnnouncements() error {
	s.closeSkip.workers = make(map[string]announced)
	sub, err := s.nc.Subscribe(s.subj.WorkerAnnounce(), s.onAnnounce)
	if err != nil {
		return err
	}
	s.subs = append(s.subs, sub)
	return nil
}

// onAnnounce records a worker's announcement.
func (s *Server) onAnnounce(m *nats.Msg) {
	var a bus.WorkerInfo
	if err := bus.DecodeWorkerInfo(m.Data, &a); err != nil || a.ID == "" || a.Kind == "task" {
		return
	}
	cs := &s.closeSkip
	now := time.Now().UnixNano()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if a.Leaving {
		delete(cs.workers, a.ID)
	} else if _, ok := cs.workers[a.ID]; ok || len(cs.workers) <= maxAnnounced {
		iv := max(time.Duration(a.IntervalMs)*time.Millisecond, minAnnounceInterval)
		cs.workers[a.ID] = announced{noClose: a.NoClose, noWS: a.NoWebSocketConnect, noConn: a.NoConnect,
			expires: now + int64(3*iv)}
	}
	cs.updateLocked(now)
}

// updateLocked works out skip again, forgetting expired workers. Caller
// holds cs.mu.
func (cs *closeSkip) updateLocked(now int64) {
	skip := len(cs.workers) > 0 && len(cs.workers) <= maxAnnounced && !cs.unannounced
	skipWS, skipConn := skip, skip
	soonest := int64(0)
	for id, w := range cs.workers {
		if now > w.expires {
			delete(cs.workers, id)
			continue
		}
		skip = skip && w.noClose
		skipWS = skipWS && w.noWS
		skipConn = skipConn && w.noConn
		if soonest == 0 || w.expires < soonest {
			soonest = w.expires
		}
	}
	cs.soonest.Store(soonest)
	cs.skip.Store(skip && len(cs.workers) > 0)
	cs.skipWS.Store(skipWS && len(cs.workers) > 0)
	cs.skipConn.Store(skipConn && len(cs.workers) > 0)
}

// sawWorker notes an ack from worker id; one without an announcement
// turns skipping off for good (see above). Cheap while nothing is
// skipped.
func (cs *closeSkip) sawWorker(id string) {
	if !cs.skip.Load() && !cs.skipWS.Load() && !cs.skipConn.Load() {
		return
	}
	cs.mu.Lock()
	if _, ok := cs.workers[id]; !ok {
		cs.unannounced = true
		cs.updateLocked(time.Now().UnixNano())
	}
	cs.mu.Unlock()
}

// skipClose reports whether a close event may be left out now.
func (cs *closeSkip) skipClose() bool { return cs.holds(&cs.skip) }

// skipWSConnect reports whether a WebSocket connect event may be left out
// now (the upgrade then collects no request either).
func (cs *closeSkip) skipWSConnect() bool { return cs.holds(&cs.skipWS) }

// skipConnect reports whether a connect event may be left out now.
func (cs *closeSkip) skipConnect() bool { return cs.holds(&cs.skipConn) }

// holds reports whether flag (cs.skip, skipWS or skipConn) is set now. An
// expired worker table is looked at again, so skipping ends within an
// expiry once the last announcing worker is gone silently.
func (cs *closeSkip) holds(flag *atomic.Bool) bool {
	if !flag.Load() {
		return false
	}
	if time.Now().UnixNano() <= cs.soonest.Load() {
		return true
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.updateLocked(time.Now().UnixNano())
	return flag.Load()
}
