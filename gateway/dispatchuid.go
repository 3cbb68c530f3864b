package gateway

import "sync"

// Dispatch by uid (Config.Dispatch == DispatchUID, Swoole's dispatch_mode
// 5). Per-client order stays as it is (one batch of a client in flight at
// a time); besides, the clients of this gateway bound to one uid share a
// gate: a batch of such a client goes out only while it holds its uid's
// gate, and holds it until the batch ends (final ack, or dead letter).
// Clients that find the gate held wait in line (FIFO) and take it in turn,
// one batch each: a client with more events after its batch goes to the
// back of the line. So the events of one uid are handled one batch at a
// time, by one worker at a time, each client's in order; the clients'
// batches interleave in the order the clients came to the gate.
//
// The uid is the client's at dispatch time: events queued before a bind
// and dispatched after it are gated; a batch keeps the gate it took even
// if its client is rebound meanwhile. A uid's gate exists only while one
// of its batches is in flight or waits: the cost is one map operation per
// batch of a bound client, under a gateway-wide mutex, and the lost
// concurrency of a uid's clients.
//
// Across gateways: the client holding a uid's gate here must also hold
// the uid's cluster gate, kept by the uid's owner gateway (uidgate.go),
// before its batch goes out; it gives both back when the batch ends. So a
// uid's batches are one at a time cluster-wide, and the gateways of a uid
// take turns in the order they asked the owner.

// uidGates are the held gates by uid. mu is a leaf lock, taken under
// conn.evmu. cluster is the gateway's side of the cluster gates.
type uidGates struct {
	mu      sync.Mutex
	m       map[string]*uidGate
	cluster uidCluster
}

// uidGate is a held gate: the clients waiting for it, oldest first.
type uidGate struct {
	waiting []*conn
}

// acquire takes uid's gate for c, or puts c in line and reports false.
func (g *uidGates) acquire(uid string, c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[string]*uidGate)
	}
	gate := g.m[uid]
	if gate == nil {
		g.m[uid] = &uidGate{}
		return true
	}
	gate.waiting = append(gate.waiting, c)
	return false
}

// release hands uid's gate to the first client in line and returns it,
// or frees the gate and returns nil.
func (g *uidGates) release(uid string) *conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	gate := g.m[uid]
	if gate == nil {
		return nil
	}
	if len(gate.waiting) == 0 {
		delete(g.m, uid)
		return nil
	}
	next := gate.waiting[0]
	gate.waiting[0] = nil
	gate.waiting = gate.waiting[1:]
	if len(gate.waiting) == 0 {
		gate.waiting = nil // let the array go
	}
	return next
}

// held returns the number of held gates (for tests).
func (g *uidGates) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

// gateLocked is dispatchLocked's gate under DispatchUID: it reports
// whether c's next batch may go now, and which uid's gate it then holds
// ("" for none: c is not bound, or dispatch is by client). When c must
// wait, it is put in line and false is returned; the gate's holder hands
// it over (passGate). Caller holds c.evmu.
func (s *Server) gateLocked(c *conn) (uid string, ok bool) {
	if s.cfg.Dispatch != DispatchUID {
		return "", true
	}
	c.sh.mu.Lock()
	uid = c.uid
	c.sh.mu.Unlock()
	if uid == "" {
		return "", true
	}
	if !s.gates.acquire(uid, c) || !s.clusterAcquire(uid, c) {
		// In the local line, or waiting for the cluster gate:
		// clusterGranted hands it over.
		c.gateWait = true
		return "", false
	}
	return uid, true
}

// passGate ends c's hold of uid's gate once its batch ended: c goes back
// in line if it has more events, and the gate passes to the first client
// in line, whose next batch goes out.
func (s *Server) passGate(uid string, c *conn) {
	c.evmu.Lock()
	if c.inflight == nil && len(c.pending) > 0 && !c.gateWait {
		// Still c's gate: it goes to the back of the line (or gets the
		// gate back at once if nobody waits).
		c.gateWait = true
		s.gates.mu.Lock()
		gate := s.gates.m[uid]
		gate.waiting = append(gate.waiting, c)
		s.gates.mu.Unlock()
	}
	c.evmu.Unlock()
	s.clusterRelease(uid)
	for next := s.gates.release(uid); next != nil; {
		next = s.grant(next, uid)
	}
}

// grant gives uid's local gate to c, which waited for it in line, and
// asks for the uid's cluster gate: when c has it at once, granted goes
// on; else grant returns nil and clusterGranted goes on later.
func (s *Server) grant(c *conn, uid string) *conn {
	if !s.clusterAcquire(uid, c) {
		return nil
	}
	return s.granted(c, uid)
}

// granted gives uid's gate (local and cluster) to c, which waited for it:
// c's next batch goes out under it. If c no longer needs it (rebound or
// unbound meanwhile), the gate goes on: granted releases it and returns
// the next client in line (nil when none), and c dispatches as any
// client.
func (s *Server) granted(c *conn, uid string) *conn {
	c.evmu.Lock()
	c.gateWait = false
	c.sh.mu.Lock()
	same := c.uid == uid
	c.sh.mu.Unlock()
	if same && c.inflight == nil && len(c.pending) > 0 {
		s.sendBatchLocked(c, uid)
		c.evmu.Unlock()
		return nil
	}
	c.evmu.Unlock()
	s.clusterRelease(uid)
	next := s.gates.release(uid)
	c.evmu.Lock()
	if c.inflight == nil && !c.gateWait && len(c.pending) > 0 {
		s.dispatchLocked(c)
	}
	c.evmu.Unlock()
	return next
}
