// Package membership tracks the live gateways of a cluster from their
// heartbeats on the bus (bus.Heartbeat on bus.Subjects.Heartbeat): a gateway
// runs one to know its peers, an API client (package api) one to know
// which gateways to query.
package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
	"github.com/gatework/gatework/internal/phase"
)

// Defaults of a Tracker.
const (
	// DefaultHeartbeatInterval is the heartbeat interval assumed for a
	// heartbeat that states none and for gateways learned with Observe.
	DefaultHeartbeatInterval = time.Second
	// ExpiryIntervals is how many heartbeat intervals a gateway may stay
	// silent before it is considered gone.
	ExpiryIntervals = 3
	// DefaultMaxGateways bounds how many gateways a Tracker tracks.
	DefaultMaxGateways = 4096

	// minHeartbeatInterval and maxHeartbeatInterval clamp the interval a
	// heartbeat states, so that a broken or hostile peer can neither make an
	// entry flap nor pin it for hours.
	minHeartbeatInterval = 10 * time.Millisecond
	maxHeartbeatInterval = time.Minute
)

// Config configures a Tracker. The zero value works.
type Config struct {
	// Prefix is the cluster's subject prefix; "" means bus.DefaultPrefix.
	Prefix string
	// Self is the id of the gateway that owns this Tracker, if any: it
	// is always live, never expires and its own heartbeats are ignored.
	// Empty for API clients.
	Self string
	// Interval is the heartbeat interval assumed when a heartbeat states
	// none (IntervalMs 0) and for gateways added with Observe; it is also
	// how often expired entries are swept. 0 means DefaultHeartbeatInterval.
	Interval time.Duration
	// MaxGateways bounds the number of tracked gateways; 0 means
	// DefaultMaxGateways. At the bound, a gateway heard directly evicts the
	// oldest one only learned from peers (Observe); if there is none, the
	// newcomer is ignored (and logged) until an entry expires. Gateways
	// already tracked are never pushed out by newcomers they did not hear.
	MaxGateways int
	// Logger receives warnings about dropped heartbeats; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests set it to control expiry.
	Now func() time.Time
	// Passive, when set, subscribes to no heartbeat: the Tracker knows
	// Self and the gateways given to Heard and Observe only. For a
	// gateway process of a node whose master follows the heartbeats once
	// for all its processes: N processes that each followed every other
	// one's heartbeat cost N² deliveries a second on the bus. False
	// means the Tracker follows every heartbeat.
	Passive bool
}

// member is one tracked gateway.
type member struct {
	expires   time.Time
	heard     bool     // announced itself with a heartbeat (not only learned from peers)
	listeners []string // listener names of its last heartbeat, at most maxListeners
	// overloaded is the Overloaded flag of its last heartbeat.
	overloaded bool
}

// Bounds of the listener names kept per gateway: a heartbeat naming more,
// or longer ones, has the rest ignored.
const (
	maxListeners    = 256
	maxListenerName = 256
)

// Tracker tracks the live gateways of a cluster from their heartbeats on
// bus.Subjects.Heartbeat(). A gateway is live from its first heartbeat until it
// sends one with Leaving set, or until ExpiryIntervals of the interval its
// last heartbeat stated pass without another one.
//
// All methods are safe for concurrent use. OnChange callbacks run on one
// internal goroutine, one at a time, in the order the changes happened.
type Tracker struct {
	nc       *nats.Conn
	sub      *nats.Subscription
	self     string
	interval time.Duration
	max      int
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	members  map[string]member
	left     map[string]time.Time // gateways that said Leaving: Observe ignores them until the time
	added    map[string]struct{}  // changes not yet reported to onChange
	removed  map[string]struct{}
	onChange func(added, removed []string)
	refused  uint64 // newcomers ignored at the bound
	closed   bool

	notify chan struct{} // cap 1: wakes the runner to report changes
	quit   chan struct{}
	done   chan struct{}
}

// New subscribes to the heartbeats on nc and starts tracking.
// nc is borrowed: Close unsubscribes but does not close it.
func New(nc *nats.Conn, cfg Config) (*Tracker, error) {
	if nc == nil {
		return nil, errors.New("membership: nil connection")
	}
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	if cfg.Self != "" && !clientid.ValidGateway(cfg.Self) {
		return nil, fmt.Errorf("membership: invalid self gateway id %q", cfg.Self)
	}
	if cfg.Interval < 0 || cfg.MaxGateways < 0 {
		return nil, errors.New("membership: negative interval or max gateways")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultHeartbeatInterval
	}
	if cfg.MaxGateways == 0 {
		cfg.MaxGateways = DefaultMaxGateways
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Tracker{
		nc:       nc,
		self:     cfg.Self,
		interval: cfg.Interval,
		max:      cfg.MaxGateways,
		log:      cfg.Logger,
		now:      cfg.Now,
		members:  make(map[string]member),
		left:     make(map[string]time.Time),
		added:    make(map[string]struct{}),
		removed:  make(map[string]struct{}),
		notify:   make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if !cfg.Passive {
		m.sub, err = nc.Subscribe(subj.Heartbeat(), m.handle)
		if err != nil {
			return nil, fmt.Errorf("membership: subscribe %s: %w", subj.Heartbeat(), err)
		}
	}
	go m.run()
	return m, nil
}

// Live returns the ids of the live gateways, sorted, Self included. The
// slice is the caller's. Live never blocks on the network.
func (m *Tracker) Live() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(m.now())
	out := make([]string, 0, len(m.members)+1)
	if m.self != "" {
		out = append(out, m.self)
	}
	for gw := range m.members {
		out = append(out, gw)
	}
	slices.Sort(out)
	return out
}

// Overloaded reports whether a live gateway's last heartbeat said it is
// overloaded (bus.Heartbeat.Overloaded). It never blocks on the network.
func (m *Tracker) Overloaded() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, mb := range m.members {
		if mb.overloaded && now.Before(mb.expires) {
			return true
		}
	}
	return false
}

// Observe records gw as live because a peer said so (Reply.Peers) and
// reports whether it is tracked as live now. An unknown gw is added and
// expires like the others unless it is heard from itself; a gw already
// tracked is left as it is, and one that said Leaving or expired recently
// (within ExpiryIntervals intervals) is ignored: a peer's list may lag
// behind a leaving heartbeat, so a query must not wait for such a gw.
// Malformed ids, the tracker's own id and a gw refused at the bound are
// ignored too (false).
func (m *Tracker) Observe(gw string) bool {
	if gw == m.self || !clientid.ValidGateway(gw) {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	now := m.now()
	if _, ok := m.members[gw]; ok {
		return true
	}
	if until, ok := m.left[gw]; ok && now.Before(until) {
		return false
	}
	if len(m.members) >= m.max {
		m.sweepLocked(now)
		if len(m.members) >= m.max {
			m.refuseLocked(gw)
			return false
		}
	}
	m.members[gw] = member{expires: now.Add(ExpiryIntervals * m.interval)}
	m.changedLocked(gw, true)
	return true
}

// OnChange sets fn to be called with the gateways that became live and
// those that went away (each sorted) since the previous call; nil stops
// the calls. Changes that happened before OnChange was set are not
// reported (Live has them). fn runs on the Tracker's goroutine and must
// not block for long; it may call Live and Observe.
func (m *Tracker) OnChange(fn func(added, removed []string)) {
	m.mu.Lock()
	m.onChange = fn
	clear(m.added)
	clear(m.removed)
	m.mu.Unlock()
}

// Close stops tracking: it unsubscribes from heartbeats and waits for the
// internal goroutine (and any OnChange callback in progress) to end, so it
// must not be called from an OnChange callback. Changes not yet reported
// are dropped. Close is idempotent; Live answers with the last state.
func (m *Tracker) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	var err error
	if m.sub != nil { // nil: passive
		err = m.sub.Unsubscribe()
	}
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		err = nil // the connection's end removed the subscription already
	}
	close(m.quit)
	<-m.done
	if err != nil {
		return fmt.Errorf("membership: unsubscribe: %w", err)
	}
	return nil
}

// handle processes one heartbeat; it runs on the subscription's goroutine.
func (m *Tracker) handle(msg *nats.Msg) {
	var hb bus.Heartbeat
	if err := bus.DecodeHeartbeat(msg.Data, &hb); err != nil {
		m.log.Debug("bus: bad heartbeat", "error", err)
		return
	}
	if !clientid.ValidGateway(hb.Gateway) {
		m.log.Debug("bus: heartbeat with invalid gateway id", "gateway", hb.Gateway)
		return
	}
	m.Heard(hb)
}

// Heard applies one heartbeat as if it had arrived on the bus (the
// subscription calls it for every heartbeat received). Heartbeats of Self
// and malformed gateway ids are ignored.
func (m *Tracker) Heard(hb bus.Heartbeat) {
	if hb.Gateway == m.self || !clientid.ValidGateway(hb.Gateway) {
		return
	}
	interval := m.interval
	if hb.IntervalMs != 0 {
		interval = time.Duration(hb.IntervalMs) * time.Millisecond
		interval = min(max(interval, minHeartbeatInterval), maxHeartbeatInterval)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	now := m.now()
	gw := hb.Gateway
	if hb.Leaving {
		if len(m.left) < m.max {
			m.left[gw] = now.Add(ExpiryIntervals * interval)
		}
		if _, ok := m.members[gw]; ok {
			delete(m.members, gw)
			m.changedLocked(gw, false)
		}
		return
	}
	delete(m.left, gw)
	expires := now.Add(ExpiryIntervals * interval)
	names := keptListeners(hb.Listeners)
	if _, ok := m.members[gw]; ok {
		m.members[gw] = member{expires: expires, heard: true, listeners: names, overloaded: hb.Overloaded}
		return
	}
	if len(m.members) >= m.max {
		m.sweepLocked(now)
	}
	if len(m.members) >= m.max && !m.evictObservedLocked() {
		m.refuseLocked(gw)
		return
	}
	m.members[gw] = member{expires: expires, heard: true, listeners: names, overloaded: hb.Overloaded}
	m.changedLocked(gw, true)
}

// keptListeners copies the listener names of a heartbeat within the
// bounds (the heartbeat's strings may alias a reused buffer).
func keptListeners(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	out := make([]string, 0, min(len(names), maxListeners))
	for _, n := range names {
		if len(out) == maxListeners {
			break
		}
		if n != "" && len(n) <= maxListenerName {
			out = append(out, strings.Clone(n))
		}
	}
	return out
}

// Listeners returns the union of the listener names the live gateways
// stated in their last heartbeat, sorted, and reports whether any live
// gateway stated names at all (false when no gateway is live, or only
// gateways learned from peers or too old to state them are: then nobody
// knows the names). The slice is the caller's.
func (m *Tracker) Listeners() (names []string, known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(m.now())
	set := make(map[string]struct{})
	for _, mb := range m.members {
		if len(mb.listeners) > 0 {
			known = true
		}
		for _, n := range mb.listeners {
			set[n] = struct{}{}
		}
	}
	return sortedKeys(set), known
}

// evictObservedLocked removes the gateway learned only from peers that
// expires first; it reports whether there was one.
func (m *Tracker) evictObservedLocked() bool {
	victim, first := "", time.Time{}
	for gw, mb := range m.members {
		if !mb.heard && (victim == "" || mb.expires.Before(first)) {
			victim, first = gw, mb.expires
		}
	}
	if victim == "" {
		return false
	}
	delete(m.members, victim)
	m.changedLocked(victim, false)
	return true
}

// refuseLocked logs a newcomer ignored at the bound: the first one and then
// every 1024th, so that a flood does not flood the log too.
func (m *Tracker) refuseLocked(gw string) {
	m.refused++
	if m.refused&(m.refused-1) == 0 || m.refused%1024 == 0 {
		m.log.Warn("membership full, gateway ignored",
			"gateway", gw, "max", m.max, "ignored_total", m.refused)
	}
}

// sweepLocked removes expired members and tombstones. An expired member
// is tombstoned like one that left, for ExpiryIntervals intervals: a peer
// that has not noticed yet (its Reply.Peers still lists the gateway) must
// not bring it back through Observe; its own heartbeat does.
func (m *Tracker) sweepLocked(now time.Time) {
	for gw, mb := range m.members {
		if !now.Before(mb.expires) {
			delete(m.members, gw)
			if len(m.left) < m.max {
				m.left[gw] = now.Add(ExpiryIntervals * m.interval)
			}
			m.changedLocked(gw, false)
		}
	}
	for gw, until := range m.left {
		if !now.Before(until) {
			delete(m.left, gw)
		}
	}
}

// changedLocked records a change for the OnChange callback and wakes the
// runner. Pending changes are net: a gateway that came and went before the
// callback ran is not reported at all. Both sets are bounded by the number
// of gateways ever tracked between two callbacks, in practice MaxGateways.
func (m *Tracker) changedLocked(gw string, added bool) {
	if m.onChange == nil {
		return
	}
	if added {
		if _, ok := m.removed[gw]; ok {
			delete(m.removed, gw)
		} else {
			m.added[gw] = struct{}{}
		}
	} else {
		if _, ok := m.added[gw]; ok {
			delete(m.added, gw)
		} else {
			m.removed[gw] = struct{}{}
		}
	}
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// run sweeps expired gateways every interval and reports changes.
func (m *Tracker) run() {
	defer close(m.done)
	every := m.sweepEvery()
	tick := time.NewTimer(phase.Until(every)) // with the process's other timers
	defer tick.Stop()
	for {
		select {
		case <-m.quit:
			return
		case <-tick.C:
			m.mu.Lock()
			m.sweepLocked(m.now())
			m.mu.Unlock()
			tick.Reset(phase.Until(every))
		case <-m.notify:
		}
		m.report()
	}
}

// sweepEvery is how often run sweeps: half the default interval, so that
// an expired gateway is reported at most that late (Live is always exact).
func (m *Tracker) sweepEvery() time.Duration {
	d := m.interval / 2
	return time.Duration(max(int64(d), int64(minHeartbeatInterval)))
}

// report calls onChange with the pending changes, if any.
func (m *Tracker) report() {
	m.mu.Lock()
	fn := m.onChange
	if fn == nil || len(m.added)+len(m.removed) == 0 {
		m.mu.Unlock()
		return
	}
	added := sortedKeys(m.added)
	removed := sortedKeys(m.removed)
	clear(m.added)
	clear(m.removed)
	m.mu.Unlock()
	fn(added, removed)
}

func sortedKeys(set map[string]struct{}) []string {
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
