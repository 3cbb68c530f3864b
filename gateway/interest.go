package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// Interest routing (docs/bus-protocol.md, "Routing by interest"): a gateway
// subscribes to P.grp.<token> while it holds at least one member of the
// group and to P.uid.<token> while it holds at least one connection bound
// to the uid, so that a send to a group or uid reaches only the gateways
// that can deliver it.
//
// Counting happens inside the shard locks, at the shard index transitions
// (a shard starts or stops indexing a name); the NATS subscribe and
// unsubscribe happen outside them, in sync (lock order: doc.go).
//
// Why an API answer needs no flush: sync issues the SUB on the gateway's
// NATS connection before the caller publishes its reply (or, for a
// worker's ack, the client's next event batch) on the same connection. A
// NATS server handles one connection's protocol in order, so the
// subscription is registered before the answer leaves the server, and a
// send published by whoever saw the answer matches it. A frame to the
// client does not travel through NATS, though: when a worker's ack binds
// or joins and then sends to the client ("you joined #room"), the rest of
// the ack waits for a flush (PING/PONG) that confirms the subscription.
// One goroutine flushes for every ack waiting, so the waits are batched
// and never block the ack handler. In a cluster of several NATS servers
// the interest reaches the other servers over the routes; see the
// protocol document for that window.

// DefaultMaxGroups is the default of Config.MaxGroups.
const DefaultMaxGroups = 1024

// DefaultMaxInterestSubjects is the default of Config.MaxInterestSubjects.
const DefaultMaxInterestSubjects = 100_000

// maxFlushWaiters bounds the acks waiting for a flush; at the bound the ack
// handler flushes itself (one round trip) instead of queueing.
const maxFlushWaiters = 4096

// flushTimeout bounds one flush; past it, or if the bus fails, the waiting
// acks go on anyway (the subscription is re-sent by the NATS client when
// it reconnects).
const flushTimeout = 5 * time.Second

// maxRecentIDs bounds the MsgIDs a gateway remembers to drop the later
// copies of a send routed on several subjects.
const maxRecentIDs = 8192

type interestKind uint8

const (
	interestUID interestKind = iota
	interestGroup
)

type interestKey struct {
	kind interestKind
	name string
}

// interest keeps the gateway's uid and group subscriptions in step with
// its shard indexes.
type interest struct {
	s *Server

	mu     sync.Mutex
	counts map[interestKey]int // shards indexing the name; transiently off by a pending change, never wrong once sync ran
	dirty  map[interestKey]struct{}
	busy   bool // a sync is subscribing what it took from dirty

	syncMu sync.Mutex // serializes sync; guards subs, nsubs, wild, ch and closed
	subs   map[interestKey]*nats.Subscription
	nsubs  [2]int                // len(subs) per kind
	wild   [2]*nats.Subscription // per kind, once past Config.MaxInterestSubjects
	ch     chan *nats.Msg        // the gateway's command channel, set by start
	closed bool

	received     atomic.Uint64 // commands received on cmd, bcast, uid and group subjects
	duplicates   atomic.Uint64 // routed copies dropped by MsgID
	subscribes   atomic.Uint64
	unsubscribes atomic.Uint64

	subGen     atomic.Uint64 // subscriptions issued
	flushedGen atomic.Uint64 // subscriptions the NATS server confirmed

	flushMu      sync.Mutex
	flushWaiting []func()
	flushStopped bool
	flushWake    chan struct{} // capacity 1
	flushAcks    atomic.Int64  // acks queued or running on the flusher: Shutdown waits for them

	recentMu sync.Mutex
	recent   map[uint64]struct{}
	ring     []uint64 // the ids in recent, oldest at next
	next     int
}

func newInterest(s *Server) *interest {
	return &interest{
		s:         s,
		counts:    make(map[interestKey]int),
		dirty:     make(map[interestKey]struct{}),
		subs:      make(map[interestKey]*nats.Subscription),
		recent:    make(map[uint64]struct{}),
		flushWake: make(chan struct{}, 1),
		ring:      make([]uint64, maxRecentIDs),
	}
}

// start lets sync subscribe, delivering to ch (the ordered command queue),
// and starts the flusher, which ends when quit is closed.
func (in *interest) start(ch chan *nats.Msg, quit <-chan struct{}, wg *sync.WaitGroup) {
	in.syncMu.Lock()
	in.ch = ch
	in.syncMu.Unlock()
	in.sync()
	wg.Add(1)
	go func() { defer wg.Done(); in.flusher(quit) }()
}

// needsFlush reports whether a subscription was issued that the NATS
// server has not confirmed yet.
func (in *interest) needsFlush() bool { return in.subGen.Load() > in.flushedGen.Load() }

// afterFlush runs fn once the subscriptions issued so far are confirmed by
// the NATS server (or a flush failed), on the flusher goroutine; at the
// bound, or once the gateway stopped, it flushes and runs fn on the
// caller's goroutine.
func (in *interest) afterFlush(fn func()) {
	in.flushMu.Lock()
	if in.flushStopped || len(in.flushWaiting) >= maxFlushWaiters {
		in.flushMu.Unlock()
		in.flush()
		fn()
		return
	}
	in.flushWaiting = append(in.flushWaiting, fn)
	in.flushAcks.Add(1)
	in.flushMu.Unlock()
	select {
	case in.flushWake <- struct{}{}:
	default:
	}
}

// flusher confirms subscriptions for the acks waiting, one flush for all
// of them, until quit; then it runs those still waiting without a flush.
func (in *interest) flusher(quit <-chan struct{}) {
	for {
		select {
		case <-in.flushWake:
		case <-quit:
			in.flushMu.Lock()
			in.flushStopped = true
			waiting := in.flushWaiting
			in.flushWaiting = nil
			in.flushMu.Unlock()
			in.run(waiting)
			return
		}
		in.flushMu.Lock()
		waiting := in.flushWaiting
		in.flushWaiting = nil
		in.flushMu.Unlock()
		if len(waiting) == 0 {
			continue
		}
		in.flush()
		in.run(waiting)
	}
}

func (in *interest) run(waiting []func()) {
	for _, fn := range waiting {
		fn()
		in.flushAcks.Add(-1)
	}
}

// flush waits until the NATS server has processed every subscription
// issued so far.
func (in *interest) flush() {
	gen := in.subGen.Load()
	if err := in.s.nc.FlushTimeout(flushTimeout); err != nil {
		in.s.log.Warn("interest flush failed", "err", err)
		return
	}
	for {
		cur := in.flushedGen.Load()
		if cur >= gen || in.flushedGen.CompareAndSwap(cur, gen) {
			return
		}
	}
}

// stop unsubscribes everything; later syncs subscribe nothing.
func (in *interest) stop() {
	in.syncMu.Lock()
	defer in.syncMu.Unlock()
	in.closed = true
	for k, sub := range in.subs {
		_ = sub.Unsubscribe()
		delete(in.subs, k)
	}
	in.nsubs = [2]int{}
	for kind, sub := range in.wild {
		if sub != nil {
			_ = sub.Unsubscribe()
			in.wild[kind] = nil
		}
	}
}

// changeLocked records that a shard started (delta 1) or stopped (delta -1)
// indexing name. The caller holds that shard's lock and calls sync after
// releasing it, before it answers anyone.
func (in *interest) changeLocked(kind interestKind, name string, delta int) {
	k := interestKey{kind, name}
	in.mu.Lock()
	n := in.counts[k] + delta
	if n == 0 {
		delete(in.counts, k)
	} else {
		in.counts[k] = n
	}
	in.dirty[k] = struct{}{}
	in.mu.Unlock()
}

// sync subscribes to the names now indexed and unsubscribes from those no
// longer indexed. When it returns, every change recorded before the call
// is reflected in the subscriptions (issued on the NATS connection), even
// one another goroutine's sync took over. It never blocks on the network.
func (in *interest) sync() {
	in.mu.Lock()
	idle := len(in.dirty) == 0 && !in.busy
	in.mu.Unlock()
	if idle {
		return
	}
	in.syncMu.Lock()
	defer in.syncMu.Unlock()
	type work struct {
		k    interestKey
		want bool
	}
	in.mu.Lock()
	todo := make([]work, 0, len(in.dirty))
	for k := range in.dirty {
		todo = append(todo, work{k, in.counts[k] > 0})
	}
	clear(in.dirty)
	in.busy = true
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		in.busy = false
		in.mu.Unlock()
	}()
	if in.ch == nil || in.closed {
		return // not started (nothing to route yet) or stopped
	}
	for _, w := range todo {
		kind := w.k.kind
		if in.wild[kind] != nil {
			continue // every subject of this kind comes already
		}
		sub := in.subs[w.k]
		switch {
		case w.want && sub == nil:
			if in.nsubs[kind] >= in.s.cfg.MaxInterestSubjects {
				in.goWildLocked(kind)
				continue
			}
			subject := in.subject(w.k)
			sub, err := in.s.nc.ChanSubscribe(subject, in.ch)
			if err != nil {
				in.s.log.Warn("interest not subscribed", "subject", subject, "err", err)
				continue
			}
			in.subs[w.k] = sub
			in.nsubs[kind]++
			in.subscribes.Add(1)
			in.subGen.Add(1)
		case !w.want && sub != nil:
			if err := sub.Unsubscribe(); err != nil {
				in.s.log.Warn("interest not unsubscribed", "subject", sub.Subject, "err", err)
			}
			delete(in.subs, w.k)
			in.nsubs[kind]--
			in.unsubscribes.Add(1)
		}
	}
}

// goWildLocked replaces the individual subscriptions of kind by one to
// every subject of that kind, for good: the bound of
// Config.MaxInterestSubjects. The wildcard is subscribed first, so no send
// is missed; a send that matches both while the individual ones go is
// delivered once thanks to its MsgID (routed sends carry one). Caller
// holds syncMu.
func (in *interest) goWildLocked(kind interestKind) {
	subject, what := in.s.subj.AllUIDs(), "uids"
	if kind == interestGroup {
		subject, what = in.s.subj.AllGroups(), "groups"
	}
	sub, err := in.s.nc.ChanSubscribe(subject, in.ch)
	if err != nil {
		in.s.log.Warn("interest not subscribed", "subject", subject, "err", err)
		return
	}
	in.wild[kind] = sub
	in.subscribes.Add(1)
	in.subGen.Add(1)
	for k, sub := range in.subs {
		if k.kind != kind {
			continue
		}
		_ = sub.Unsubscribe()
		delete(in.subs, k)
		in.unsubscribes.Add(1)
	}
	in.nsubs[kind] = 0
	in.s.log.Warn("routing by interest: too many distinct "+what+" on this gateway; it now receives every send to "+what,
		"max_interest_subjects", in.s.cfg.MaxInterestSubjects, "subject", subject)
}

func (in *interest) subject(k interestKey) string {
	if k.kind == interestGroup {
		return in.s.subj.Group(k.name)
	}
	return in.s.subj.UID(k.name)
}

// subscribed returns how many uid and group subjects the gateway is
// subscribed to (a wildcard counts as one), and which kinds went wildcard.
func (in *interest) subscribed() (n int, wildUIDs, wildGroups bool) {
	in.syncMu.Lock()
	defer in.syncMu.Unlock()
	n = len(in.subs)
	for _, w := range in.wild {
		if w != nil {
			n++
		}
	}
	return n, in.wild[interestUID] != nil, in.wild[interestGroup] != nil
}

// firstCopy reports whether a send with this MsgID is seen for the first
// time among the last maxRecentIDs routed sends; 0 (a send on one subject)
// is always first.
func (in *interest) firstCopy(id uint64) bool {
	if id == 0 {
		return true
	}
	in.recentMu.Lock()
	defer in.recentMu.Unlock()
	if _, dup := in.recent[id]; dup {
		in.duplicates.Add(1)
		return false
	}
	if old := in.ring[in.next]; old != 0 {
		delete(in.recent, old)
	}
	in.ring[in.next] = id
	in.next = (in.next + 1) % len(in.ring)
	in.recent[id] = struct{}{}
	return true
}

// InterestStats describes a gateway's routing by interest.
type InterestStats struct {
	// Subscriptions is the number of uid and group subjects subscribed.
	Subscriptions int `json:"subscriptions"`
	// Subscribes and Unsubscribes count subscription changes since start.
	Subscribes   uint64 `json:"subscribes"`
	Unsubscribes uint64 `json:"unsubscribes"`
	// Received counts commands received from the bus on the gateway's cmd
	// subject, the broadcast subject and its uid and group subjects
	// (queries not included).
	Received uint64 `json:"received"`
	// Duplicates counts copies of a routed send dropped by MsgID.
	Duplicates uint64 `json:"duplicates"`
	// WildcardUIDs and WildcardGroups report that the gateway went past
	// Config.MaxInterestSubjects for that kind and receives every send to
	// a uid (or a group).
	WildcardUIDs   bool `json:"wildcard_uids"`
	WildcardGroups bool `json:"wildcard_groups"`
}

// InterestStats returns a snapshot of the gateway's routing by interest.
// It is safe for concurrent use.
func (s *Server) InterestStats() InterestStats {
	in := s.interest
	n, wu, wg := in.subscribed()
	return InterestStats{
		Subscriptions:  n,
		WildcardUIDs:   wu,
		WildcardGroups: wg,
		Subscribes:     in.subscribes.Load(),
		Unsubscribes:   in.unsubscribes.Load(),
		Received:       in.received.Load(),
		Duplicates:     in.duplicates.Load(),
	}
}

// checkJoin returns an error when c may not join g: it is already in
// MaxGroups groups. Caller holds c's shard lock.
func (s *Server) checkJoin(c *conn, g string) error {
	if len(c.groups) >= s.cfg.MaxGroups && !c.hasGroup(g) {
		return codeErr(bus.ErrCodeInvalidRequest, "client is already in %d groups (max_groups)", len(c.groups))
	}
	return nil
}
