package gateway

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
)

// transport is the socket under a connection, provided by a listener's
// engine. Both methods are safe to call from any goroutine.
type transport interface {
	// write hands b, which holds whole frames, to the socket without
	// blocking; b may be reused once write returns.
	write(b []byte) error
	// close closes the socket at once, dropping anything not yet written.
	close()
	// closeWrite sends FIN after everything written so far and keeps
	// reading (discarding), so that the peer gets the close frame instead
	// of a reset.
	closeWrite()
}

// Connection states, guarded by shard.mu.
const (
	stateOpen    uint8 = iota
	stateClosing       // close frame queued; FIN follows once it is written
	stateLinger        // FIN sent; waiting for the peer to close, up to CloseTimeout
	stateClosed        // removed from the hub; only the close event remains
)

// conn is one client connection. Fields are grouped by what guards them;
// keep the struct small, it is what every idle connection costs.
type conn struct {
	seq    uint64
	sh     *shard
	l      *listener
	t      transport
	remote netip.AddrPort

	connectedMs  int64
	lastActiveMs atomic.Int64
	bytesIn      atomic.Uint64
	bytesOut     atomic.Uint64
	msgsIn       atomic.Uint64
	// unsent counts bytes handed to the socket engine and not yet written
	// to the kernel; the engine's written-size callback decrements it.
	unsent atomic.Int64
	// shut is set once the connection leaves stateOpen, for the read path,
	// which then discards input without taking the shard lock.
	shut atomic.Bool
	// rx holds the connection's receive holds (rx.go): 0 while it is read
	// as usual, which is all the read path looks at. It fills what would
	// be padding after shut.
	rx atomic.Uint32

	// Guarded by sh.mu. uid, groups and session are replaced, never
	// modified in place, so a reader may keep a snapshot outside the lock.
	uid     string
	groups  []string // sorted
	session []byte   // JSON object, nil when empty
	out     []byte   // frames waiting for the shard's flush
	msgsOut uint64   // messages queued (a plain add: an atomic one is a fan-out's costliest instruction)
	state   uint8
	// deflate is the window bits (8–15) of the messages compressed for c
	// (permessage-deflate); 0: none. Set before c is registered.
	deflate uint8
	dirty   bool // in sh.dirty
	reason  CloseReason
	// protected exempts c from pings and the idle timeout (Protect).
	protected bool
	// binary: every message sent to c goes as a binary frame (SetBinary).
	binary bool
	// held: c's frames wait in out until the socket has written what it
	// holds (drop_oldest; see queue.go).
	held bool
	// closeLost: Shutdown's deadline found c still in the hub and counted
	// its close event lost; closed then produces none (it would reach a
	// worker after being reported lost). Fills padding.
	closeLost bool
	// closeAt is set (unix nanoseconds) while a graceful close waits for
	// the socket to drain.
	closeAt int64
	// dueTick is the heartbeat sweep's tick at which c is next looked at
	// (wheel.go); 0 while c is in no bucket.
	dueTick int64

	// The event pipeline, guarded by evmu.
	evmu         sync.Mutex
	inflight     *delivery
	pending      []bus.Event
	pendingBytes int
	// gateWait: c waits in line for its uid's gate (DispatchUID).
	gateWait bool
}

// sync orders the engine's callbacks after the connection's creation. The
// engine hands connections between goroutines through epoll, which the
// race detector cannot see; newConn's last write is an atomic store, so
// this atomic load makes the hand-over visible (and costs a plain load).
func (c *conn) sync() { _ = c.lastActiveMs.Load() }

// closing reports whether c is being (or has been) closed.
func (c *conn) closing() bool { return c.shut.Load() }

// id returns the client id of c.
func (c *conn) id(gw string) string { return clientid.Make(gw, c.seq) }

// snapshot returns c's state for an event batch or a query reply. The
// caller holds c.sh.mu or accepts a momentary view.
func (c *conn) snapshot(gw string, fields uint32) bus.ClientState {
	st := bus.ClientState{}
	if fields&bus.FieldRemoteIP != 0 {
		st.RemoteIP = c.remote.Addr().Unmap().String()
	}
	if fields&bus.FieldRemotePort != 0 {
		st.RemotePort = uint32(c.remote.Port())
	}
	if fields&bus.FieldUID != 0 {
		st.UID = c.uid
	}
	if fields&bus.FieldGroups != 0 {
		st.Groups = c.groups
	}
	if fields&bus.FieldSession != 0 {
		st.Session = c.session
	}
	if fields&bus.FieldSystem != 0 {
		st.Listener = c.l.cfg.Name
		st.Protocol = c.l.cfg.Protocol
		st.Codec = c.l.codecName()
		st.ConnectedUnixMs = c.connectedMs
		st.LastActiveUnixMs = c.lastActiveMs.Load()
		st.BytesIn = c.bytesIn.Load()
		st.BytesOut = c.bytesOut.Load()
		st.MessagesIn = c.msgsIn.Load()
		st.MessagesOut = c.msgsOut
		st.Gateway = gw
		st.Protected = c.protected
	}
	return st
}

// hasGroup reports whether c is in group g. Caller holds sh.mu.
func (c *conn) hasGroup(g string) bool {
	_, ok := slices.BinarySearch(c.groups, g)
	return ok
}

// withGroup returns a new sorted slice of c's groups plus g.
func withGroup(groups []string, g string) []string {
	i, ok := slices.BinarySearch(groups, g)
	if ok {
		return groups
	}
	out := make([]string, 0, len(groups)+1)
	out = append(out, groups[:i]...)
	out = append(out, g)
	return append(out, groups[i:]...)
}

// withoutGroup returns a new sorted slice of c's groups minus g.
func withoutGroup(groups []string, g string) []string {
	i, ok := slices.BinarySearch(groups, g)
	if !ok {
		return groups
	}
	if len(groups) == 1 {
		return nil
	}
	out := make([]string, 0, len(groups)-1)
	out = append(out, groups[:i]...)
	return append(out, groups[i+1:]...)
}
