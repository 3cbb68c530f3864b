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
// Lock order: conn.evmu before shard.mu before Server.infMu. The socket
// engine's own locks are taken last (inside transport calls) and never call
// back into gateway code that takes a lock. A UDP listener's peer-map
// lock (udpEngine.mu) is never held while calling into the shards.
package gateway
