package gateway

import (
	"sync"
	"time"
)

// The owner's side of the cluster-wide uid gates (dispatch by uid; see
// uidgate.go for the whole protocol). The owner of a uid is the live
// gateway that ranks first for it by rendezvous hashing (ownerOf); it
// keeps, for each uid of its with a hold or a wait, the holder and the
// waiters in the order they asked, each as (gateway, token) with a lease:
// the owner drops a hold or a wait that is not renewed within its lease,
// so a gateway that died does not block the uid for longer than that.

// maxOwnedUIDs bounds the uids an owner keeps gates for. Past it, an
// acquire of a new uid is granted without being recorded (the uid is then
// serialized per gateway only until the table has room again), counted in
// uidOwner.overflow and logged.
const maxOwnedUIDs = 1 << 20

// gateRef names one hold of a gate: the gateway that asked, and its token.
type gateRef struct {
	gw    string
	token uint64
}

// gateEntry is one waiter or the holder, with the end of its lease (unix
// nanoseconds).
type gateEntry struct {
	gateRef
	expires int64
}

// ownedGate is the gate of one owned uid: its holder (held false: free,
// the waiters wait only for the grace to end) and its waiters, oldest
// first.
type ownedGate struct {
	held    bool
	holder  gateEntry
	waiting []gateEntry
}

// gateGrant is a grant the owner's caller delivers, outside the owner's
// lock: uid's gate now belongs to ref.
type gateGrant struct {
	uid string
	ref gateRef
}

// uidOwner is the table of the gates this gateway owns. mu is a leaf lock.
type uidOwner struct {
	mu sync.Mutex
	m  map[string]*ownedGate
	// graceUntil (unix nanoseconds): until then, a uid the table does not
	// know is not granted to a new waiter (only to a gateway that says it
	// holds the gate already): after a change in the live gateways, the
	// holders that a previous owner granted have one lease to renew here
	// first.
	graceUntil int64
	overflow   uint64
}

// acquire records ref's wait for uid's gate, or renews it (renew: ref
// says it holds the gate already, a hold granted by this owner or by a
// previous one), with a lease of lease. It reports whether ref holds the
// gate now (a renewal of a hold, or a grant). A renewal of a hold this
// table does not know makes ref the holder when the gate is free, else ref
// goes first in line (two gateways hold the uid's gate meanwhile: the
// window of an ownership change, docs/tasks.md).
func (o *uidOwner) acquire(uid string, ref gateRef, renew bool, lease time.Duration, now int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	exp := now + int64(lease)
	g := o.m[uid]
	if g == nil {
		if len(o.m) >= maxOwnedUIDs {
			o.overflow++
			return true
		}
		if o.m == nil {
			o.m = make(map[string]*ownedGate)
		}
		g = &ownedGate{}
		o.m[uid] = g
		if !renew && now < o.graceUntil {
			g.waiting = append(g.waiting, gateEntry{ref, exp})
			return false
		}
	}
	if g.held && g.holder.gateRef == ref {
		g.holder.expires = exp
		return true
	}
	for i := range g.waiting {
		if g.waiting[i].gateRef == ref {
			g.waiting[i].expires = exp
			return false
		}
	}
	switch {
	case !g.held && (renew || len(g.waiting) == 0):
		g.held, g.holder = true, gateEntry{ref, exp}
		return true
	case renew:
		g.waiting = append([]gateEntry{{ref, exp}}, g.waiting...)
	default:
		g.waiting = append(g.waiting, gateEntry{ref, exp})
	}
	return false
}

// release ends ref's hold of uid's gate, or its wait, and returns the
// grant to deliver when the gate passed to the next waiter.
func (o *uidOwner) release(uid string, ref gateRef, now int64) (gateGrant, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.m[uid]
	if g == nil {
		return gateGrant{}, false
	}
	if g.held && g.holder.gateRef == ref {
		g.held = false
		return o.nextLocked(uid, g, now)
	}
	for i := range g.waiting {
		if g.waiting[i].gateRef == ref {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			break
		}
	}
	if !g.held && len(g.waiting) == 0 {
		delete(o.m, uid)
	}
	return gateGrant{}, false
}

// nextLocked gives the free gate g of uid to its first waiter whose lease
// has not ended (those that ended are dropped), or forgets g when none
// waits. Caller holds o.mu.
func (o *uidOwner) nextLocked(uid string, g *ownedGate, now int64) (gateGrant, bool) {
	for len(g.waiting) > 0 {
		w := g.waiting[0]
		g.waiting[0] = gateEntry{}
		g.waiting = g.waiting[1:]
		if w.expires > now {
			g.held, g.holder = true, w
			return gateGrant{uid, w.gateRef}, true
		}
	}
	delete(o.m, uid)
	return gateGrant{}, false
}

// expire drops the holds and waits whose lease ended, ends the grace if
// its time has come, and returns the grants that follow.
func (o *uidOwner) expire(now int64) []gateGrant {
	o.mu.Lock()
	defer o.mu.Unlock()
	var grants []gateGrant
	for uid, g := range o.m {
		if g.held && g.holder.expires > now {
			continue
		}
		g.held = false
		if now < o.graceUntil {
			// Only the stale waiters go; the gate stays free for a
			// holder of the previous owner to renew.
			g.waiting = dropExpired(g.waiting, now)
			if len(g.waiting) == 0 {
				delete(o.m, uid)
			}
			continue
		}
		if gr, ok := o.nextLocked(uid, g, now); ok {
			grants = append(grants, gr)
		}
	}
	return grants
}

// dropExpired returns ws without the entries whose lease ended.
func dropExpired(ws []gateEntry, now int64) []gateEntry {
	kept := ws[:0]
	for _, w := range ws {
		if w.expires > now {
			kept = append(kept, w)
		}
	}
	clear(ws[len(kept):])
	return kept
}

// grace starts a grace period that ends at until (see graceUntil).
func (o *uidOwner) grace(until int64) {
	o.mu.Lock()
	o.graceUntil = max(o.graceUntil, until)
	o.mu.Unlock()
}

// size returns the number of uids with a gate in the table (for tests
// and stats).
func (o *uidOwner) size() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.m)
}

// ownerOf returns the gateway of live (not empty) that owns uid: the one
// with the highest hash of (gateway, uid). When a gateway comes or goes,
// only the uids it wins or held move.
func ownerOf(uid string, live []string) string {
	var best string
	var top uint64
	for i, gw := range live {
		h := rendezvous(gw, uid)
		if i == 0 || h > top || (h == top && gw < best) {
			best, top = gw, h
		}
	}
	return best
}

// rendezvous is the weight of gateway gw for uid: 64-bit FNV-1a of gw, a
// zero byte and uid, then the splitmix64 finalizer. It is the same in every
// process (no random seed), so all gateways that see the same live set
// agree on the owners.
func rendezvous(gw, uid string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(gw); i++ {
		h = (h ^ uint64(gw[i])) * prime
	}
	h *= prime // the zero byte
	for i := 0; i < len(uid); i++ {
		h = (h ^ uint64(uid[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
