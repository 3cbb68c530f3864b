package bus

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the subject prefix when none is configured.
const DefaultPrefix = "gw"

// Subjects names the NATS subjects of one gatework cluster. Several clusters
// can share a NATS by using different prefixes.
type Subjects struct {
	Prefix string
}

// NewSubjects returns the subjects under prefix ("" means DefaultPrefix).
// The prefix must be a valid NATS subject without wildcards.
func NewSubjects(prefix string) (Subjects, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return Subjects{}, fmt.Errorf("bus: invalid subject prefix %q", prefix)
		}
	}
	return Subjects{Prefix: prefix}, nil
}

// Events is where gateways publish EventBatch messages.
func (s Subjects) Events() string { return s.Prefix + ".events" }

// WorkersQueue is the queue group that workers subscribe to Events with.
func (s Subjects) WorkersQueue() string { return s.Prefix + ".workers" }

// Ack is the reply subject where a gateway receives Acks for its batches.
func (s Subjects) Ack(gateway string) string { return s.Prefix + ".gw." + gateway + ".ack" }

// Cmd is the request subject of one gateway.
func (s Subjects) Cmd(gateway string) string { return s.Prefix + ".gw." + gateway + ".cmd" }

// Broadcast is where sends to uids, groups and everyone, and UnGroup, are
// published; every gateway subscribes.
func (s Subjects) Broadcast() string { return s.Prefix + ".bcast" }

// Query is where scatter-gather queries are published; every gateway replies.
func (s Subjects) Query() string { return s.Prefix + ".query" }

// Heartbeat is where gateways announce themselves.
func (s Subjects) Heartbeat() string { return s.Prefix + ".hb" }
