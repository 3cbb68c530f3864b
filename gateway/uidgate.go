package gateway

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/phase"
)

// Cluster-wide uid gates (dispatch by uid). On each gateway the clients
// bound to a uid take turns at the uid's local gate (dispatchuid.go); the
// client holding it must also hold the uid's cluster gate before its batch
// goes out. The cluster gate of a uid is kept by its owner, the live
// gateway that ranks first for the uid by rendezvous hashing over the
// gateways this gateway sees live (internal/membership); see uidowner.go.
//
// A gateway asks the owner for the gate (OpUIDGateAcquire, with a token
// that names this hold and a lease), the owner grants it at once or when
// the gateways in line before it are done (OpUIDGateGrant; until then it
// answers each acquire with OpUIDGateQueued), and the gateway gives it
// back when the batch ends: final ack or dead letter (OpUIDGateRelease).
// All go on the receiver's Subjects.UIDGate, which only gateways may use.
// Every gateway serves the gates it owns, whatever its own dispatch mode.
// When the owner is this gateway, the same happens by function calls: no
// bus message.
//
// Leases: every lease/4 a gateway renews each of its holds and waits at
// the uid's owner (OpUIDGateAcquire again; Flag set for a hold), so a hold
// whose gateway died ends at most one lease after its last renewal, and
// the owner grants the next gateway in line. A lost grant is made good by
// the next renewal (the owner answers a waiter it made holder with the
// grant again); a grant for a hold the gateway no longer has is given
// back at once.
//
// Ownership moves when the live gateways change (a gateway leaves, dies
// or joins): at its next renewal each gateway asks the uid's new owner,
// and calls off its wait at the old one. A holder renews at the new owner
// with Flag set and is made holder there (or first in line, when the new
// owner already granted the gate to another gateway). The new owner
// starts with an empty table, and for lease/2 after its view of the live
// gateways changed it grants no uid it does not know to a new waiter, so
// that holders granted by the previous owner renew first. Two gateways
// can thus hold one uid's gate at once only when their views of the live
// gateways disagree for longer than that grace, or when a holder's
// renewals are delayed past its lease (a bus outage, a paused process):
// then, for at most one batch each, a uid's events run on two workers at
// once. The owner's death itself costs at most membership's expiry (3
// heartbeat intervals) plus one renewal period for the uid's gates to
// work again.
//
// An owner that never answers (a gateway of a version without uid gates,
// on the same bus): a wait that has had no answer from its owner, grant
// or queued, for a whole lease goes ahead without the cluster gate,
// counted in Stats.UIDGatesUnserved and logged: the uid is then
// serialized per gateway only, rather than stalled.

// DefaultUIDGateLease is Config.UIDGateLease's default.
const DefaultUIDGateLease = 2 * time.Second

// uidCluster is this gateway's side of the cluster gates: its holds and
// waits (one per uid at most, as the local gate lets one client of a uid
// through at a time), the gates it owns, and its view of the live
// gateways. mu is taken before own.mu, never under a conn's lock for
// longer than a map operation and a publish.
type uidCluster struct {
	mu    sync.Mutex
	holds map[string]*uidHold
	next  uint64
	own   uidOwner
	live  atomic.Pointer[[]string]
	// unserved counts the waits that went ahead without an answer from
	// their owner.
	unserved atomic.Uint64
}

// uidHold is a client's wait for, or hold of, its uid's cluster gate.
type uidHold struct {
	token   uint64
	c       *conn
	owner   string
	granted bool
	// asked is when the wait was first sent to owner (unix
	// nanoseconds); answered says owner answered it since.
	asked    int64
	answered bool
}

// startUIDGates subscribes to this gateway's uid gate subject (every
// gateway serves the gates it owns) and starts the renewals. Called by
// Start once membership runs.
func (s *Server) startUIDGates() error {
	u := &s.gates.cluster
	u.holds = make(map[string]*uidHold)
	live := s.members.Live()
	u.live.Store(&live)
	sub, err := s.nc.Subscribe(s.subj.UIDGate(s.id), s.onUIDGate)
	if err != nil {
		return err
	}
	s.subs = append(s.subs, sub)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		every := s.cfg.UIDGateLease / 4
		t := time.NewTimer(phase.Until(every))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.renewUIDGates()
				t.Reset(phase.Until(every))
			case <-s.quit:
				return
			}
		}
	}()
	return nil
}

// awaitUIDPeers, under dispatch by uid, waits one and a half heartbeat
// intervals before the gateway opens its listeners, so that its view of
// the live gateways holds every peer (each announces itself once per
// interval) and the peers have heard this gateway's first heartbeat: a
// gateway that took itself for the only one would own every uid and let a
// uid's events run beside another gateway's (gateway processes of one
// node all start together). When it has peers it then starts the owner's
// grace, as after any change of the live gateways. It returns false when
// the gateway is shut down meanwhile.
func (s *Server) awaitUIDPeers() bool {
	if s.cfg.Dispatch != DispatchUID {
		return true
	}
	t := time.NewTimer(s.cfg.HeartbeatInterval * 3 / 2)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.quit:
		return false
	}
	u := &s.gates.cluster
	live := s.members.Live()
	u.live.Store(&live)
	if len(live) > 1 {
		// Peers may have granted gates this gateway now owns; alone,
		// it knows no holder but itself.
		u.own.grace(time.Now().UnixNano() + int64(s.cfg.UIDGateLease/2))
	}
	return true
}

// clusterAcquire asks for uid's cluster gate for c, which holds uid's
// local gate, and reports whether c holds it now. When it does not, the
// grant comes later (clusterGranted). May be called under c.evmu.
func (s *Server) clusterAcquire(uid string, c *conn) bool {
	u := &s.gates.cluster
	if u.holds == nil {
		return true // not started: Start subscribes before any client
	}
	now := time.Now().UnixNano()
	u.mu.Lock()
	u.next++
	h := &uidHold{token: u.next, c: c, owner: ownerOf(uid, *u.live.Load()), asked: now}
	u.holds[uid] = h
	if h.owner != s.id {
		s.sendGate(h.owner, bus.OpUIDGateAcquire, uid, h.token, false)
		u.mu.Unlock()
		return false
	}
	ok := u.own.acquire(uid, gateRef{s.id, h.token}, false, s.cfg.UIDGateLease, now)
	h.granted = ok
	u.mu.Unlock()
	return ok
}

// clusterRelease gives back uid's cluster gate, or calls off the wait
// for it.
func (s *Server) clusterRelease(uid string) {
	u := &s.gates.cluster
	if u.holds == nil {
		return
	}
	u.mu.Lock()
	h := u.holds[uid]
	if h == nil {
		u.mu.Unlock()
		return
	}
	delete(u.holds, uid)
	gr, ok := s.releaseAtLocked(h.owner, uid, h.token)
	u.mu.Unlock()
	if ok {
		s.deliverGrant(gr)
	}
}

// releaseAtLocked ends the hold or wait (uid, token) at owner: by a call
// when it is this gateway (the grant that follows is returned, for the
// caller to deliver once u.mu is unlocked), else by a message. Caller
// holds u.mu.
func (s *Server) releaseAtLocked(owner, uid string, token uint64) (gateGrant, bool) {
	if owner == s.id {
		return s.gates.cluster.own.release(uid, gateRef{s.id, token}, time.Now().UnixNano())
	}
	s.sendGate(owner, bus.OpUIDGateRelease, uid, token, false)
	return gateGrant{}, false
}

// deliverGrant tells the gateway of gr that it holds gr.uid's gate now.
func (s *Server) deliverGrant(gr gateGrant) {
	if gr.ref.gw == s.id {
		s.clusterGranted(gr.uid, gr.ref.token, s.id)
		return
	}
	s.sendGate(gr.ref.gw, bus.OpUIDGateGrant, gr.uid, gr.ref.token, false)
}

// clusterGranted handles owner's grant of uid's gate to token: the
// waiting client's batch goes out. A grant of a hold this gateway no
// longer has, or from a gateway that is no longer the uid's owner for
// it, is given back.
func (s *Server) clusterGranted(uid string, token uint64, owner string) {
	u := &s.gates.cluster
	u.mu.Lock()
	h := u.holds[uid]
	if h == nil || h.token != token || h.owner != owner {
		gr, ok := s.releaseAtLocked(owner, uid, token)
		u.mu.Unlock()
		if ok {
			s.deliverGrant(gr)
		}
		return
	}
	h.answered = true
	if h.granted {
		u.mu.Unlock()
		return
	}
	h.granted = true
	c := h.c
	u.mu.Unlock()
	for next := s.granted(c, uid); next != nil; {
		next = s.grant(next, uid)
	}
}

// sendGate publishes a uid gate message to gateway to. A failed publish
// is logged; the renewals make it good.
func (s *Server) sendGate(to string, op bus.Op, uid string, token uint64, renew bool) {
	cmd := bus.Command{
		Version:     bus.Version,
		Op:          op,
		Arg:         uid,
		GateFrom:    s.id,
		GateToken:   token,
		GateLeaseMS: uint32(s.cfg.UIDGateLease / time.Millisecond),
		Flag:        renew,
	}
	if err := s.nc.Publish(s.subj.UIDGate(to), bus.AppendCommand(nil, &cmd)); err != nil {
		s.log.Warn("uid gate message not sent; the renewal will retry", "to", to, "op", op.String(), "err", err)
	}
}

// Bounds of a lease asked for by a peer.
const (
	minGateLease = 100 * time.Millisecond
	maxGateLease = time.Minute
)

// onUIDGate handles a uid gate message from another gateway: an acquire
// or a release of a uid this gateway owns, or a grant of a gate it waits
// for.
func (s *Server) onUIDGate(m *nats.Msg) {
	var cmd bus.Command
	if err := bus.DecodeCommand(m.Data, &cmd); err != nil || cmd.Arg == "" || cmd.GateFrom == "" {
		s.stats.badCommands.Add(1)
		s.log.Warn("malformed uid gate message dropped", "err", err)
		return
	}
	uid := cmd.Arg
	ref := gateRef{cmd.GateFrom, cmd.GateToken}
	now := time.Now().UnixNano()
	switch cmd.Op {
	case bus.OpUIDGateAcquire:
		lease := min(max(time.Duration(cmd.GateLeaseMS)*time.Millisecond, minGateLease), maxGateLease)
		switch granted := s.gates.cluster.own.acquire(uid, ref, cmd.Flag, lease, now); {
		case cmd.Flag: // a holder's renewal: no answer
		case granted:
			s.sendGate(ref.gw, bus.OpUIDGateGrant, uid, ref.token, false)
		default:
			s.sendGate(ref.gw, bus.OpUIDGateQueued, uid, ref.token, false)
		}
	case bus.OpUIDGateQueued:
		u := &s.gates.cluster
		u.mu.Lock()
		if h := u.holds[uid]; h != nil && h.token == cmd.GateToken && h.owner == cmd.GateFrom {
			h.answered = true
		}
		u.mu.Unlock()
	case bus.OpUIDGateRelease:
		if gr, ok := s.gates.cluster.own.release(uid, ref, now); ok {
			s.deliverGrant(gr)
		}
	case bus.OpUIDGateGrant:
		s.clusterGranted(uid, cmd.GateToken, cmd.GateFrom)
	default:
		s.stats.badCommands.Add(1)
	}
}

// renewUIDGates runs every lease/4: it takes the live gateways anew (a
// change starts the owner's grace), hands on the owned gates whose lease
// ended, and renews each hold and wait of this gateway at its uid's
// owner, moving it when the owner changed.
func (s *Server) renewUIDGates() {
	u := &s.gates.cluster
	lease := s.cfg.UIDGateLease
	now := time.Now().UnixNano()
	live := s.members.Live()
	if prev := u.live.Swap(&live); !slices.Equal(*prev, live) {
		u.own.grace(now + int64(lease/2))
	}
	grants := u.own.expire(now)
	var unserved []gateGrant // this gateway's waits that go ahead without their owner
	u.mu.Lock()
	for uid, h := range u.holds {
		owner := ownerOf(uid, live)
		if owner != h.owner {
			if gr, ok := s.releaseAtLocked(h.owner, uid, h.token); ok {
				grants = append(grants, gr)
			}
			h.owner, h.asked, h.answered = owner, now, false
		}
		if owner != s.id && !h.granted && !h.answered && now-h.asked >= int64(lease) {
			// The owner does not serve uid gates: go ahead without.
			if n := u.unserved.Add(1); n == 1 || n%1000 == 0 {
				s.log.Warn("uid gate: the owner never answered; the batch goes without the cluster gate (is every gateway of this version?)",
					"uid_owner", owner, "lease", lease, "unserved_total", n)
			}
			unserved = append(unserved, gateGrant{uid, gateRef{owner, h.token}})
			continue
		}
		if owner != s.id {
			s.sendGate(owner, bus.OpUIDGateAcquire, uid, h.token, h.granted)
			continue
		}
		if u.own.acquire(uid, gateRef{s.id, h.token}, h.granted, lease, now) && !h.granted {
			grants = append(grants, gateGrant{uid, gateRef{s.id, h.token}})
		}
	}
	u.mu.Unlock()
	for _, gr := range grants {
		s.deliverGrant(gr)
	}
	for _, gr := range unserved {
		s.clusterGranted(gr.uid, gr.ref.token, gr.ref.gw) // as if the owner had granted it
	}
}

// UIDGateOwner returns the gateway that this gateway asks for uid's
// cluster gate under dispatch by uid (its id when it owns the uid
// itself), as of its latest view of the live gateways, or "" when the
// gateway does not dispatch by uid or has not started.
func (s *Server) UIDGateOwner(uid string) string {
	live := s.gates.cluster.live.Load()
	if s.cfg.Dispatch != DispatchUID || live == nil {
		return ""
	}
	return ownerOf(uid, *live)
}
