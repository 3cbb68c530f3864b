// Package gateway holds client connections. A Server accepts WebSocket
// (optionally with permessage-deflate), TCP and UDP clients (a UDP peer
// address is a connection) on any number of listeners, forwards their events to workers
// over the bus with per-client order and at-least-once delivery, and
// executes API commands (sends, binds, groups, sessions, queries) for its own
// connections.
//
// Connections live in shards (one per CPU by default). A shard owns its
// connections' state, its part of the uid and group indexes and the only
// goroutine that writes to its sockets, so a fan-out runs on every core and
// writes to one connection never interleave. Outbound messages are appended
// to a per-connection buffer and written by the shard in one write per
// connection per flush, coalescing whatever queued up meanwhile.
//
// # Lock order
//
// The gateway's locks, outermost first: code holding a lock takes only the
// locks after it in its chain:
//
//   - tlsSock.rmu (what the protocol sees of one TLS socket: open, data,
//     closed), then shard.rxmu (the input of connections with a receive
//     hold: Server.applyRx and the read path of a held connection, rx.go),
//     then everything the protocol takes below. applyRx runs with no
//     shard lock held: a mutation under shard.mu only changes the hold
//     bits and leaves the socket to applyRx once the lock is released.
//   - conn.evmu (a connection's event pipeline), then shard.mu (a shard's
//     connections and indexes), then Server.infMu (the in-flight event
//     batches).
//   - shard.mu, then interest.mu (the uid and group subscription counts);
//     interest.syncMu (one subscription sync at a time), then
//     interest.mu. syncMu is never taken under a shard lock: the NATS
//     subscribe and unsubscribe happen outside the shard locks.
//
// Leaves, under which no other lock is taken: uidGates.mu (taken under
// conn.evmu), shard.heldMu, interest.flushMu,
// interest.recentMu, ipTable.mu, workerTable.mu, nbioEngine.mu,
// wsEngine.hsMu (late handshakes are closed after it is released),
// tlsLayer.mu, tlsSock.mu (the handshake goroutine waits on its condition
// variable holding nothing else), tls13Records.mu (a TLS 1.3 record
// layer's state: under it only the engine's write and hotList.mu, a leaf)
// and udpEngine.mu (never held while
// calling into the shards). The socket engine's own locks (nbio's, e.g.
// the per-socket lock closeWrite takes) come last, inside transport
// calls, and never call back into gateway code that takes a lock
// (setSocketReading takes the socket's nbio lock, under shard.rxmu or
// under no gateway lock).
package gateway
