// Package bus is the contract between gateways, workers and API clients:
// the NATS subjects they use, the protocol messages they exchange (encoded
// as Protocol Buffers by hand, see gatework.proto), what each role may do
// on them (Permissions: allow lists, one inbox prefix per role) and a thin
// dialer (Connect). It does not link nats-server: the server a
// single-machine node embeds is internal/natsembed.
//
// The protocol is versioned (Version) and documented in
// docs/bus-protocol.md so that workers and clients can be written in any
// language that has a NATS client.
package bus
