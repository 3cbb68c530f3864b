package bus

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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

// EventsMulti is where gateways publish EventBatches messages (the batches
// of several clients in one message); workers that understand them
// subscribe to it in the same queue group as to Events.
func (s Subjects) EventsMulti() string { return s.Prefix + ".events.multi" }

// WorkersQueue is the queue group that workers subscribe to Events with.
func (s Subjects) WorkersQueue() string { return s.Prefix + ".workers" }

// Ack is the reply subject where a gateway receives Acks for its batches.
func (s Subjects) Ack(gateway string) string { return s.Prefix + ".gw." + gateway + ".ack" }

// UIDGate is where gateway receives the uid gate messages (ops 80-82) of
// the other gateways: acquires and releases of the uids it owns, grants of
// the gates it waits for. Only gateways publish and subscribe here.
func (s Subjects) UIDGate(gateway string) string { return s.Prefix + ".gw." + gateway + ".uidgate" }

// Cmd is the request subject of one gateway.
func (s Subjects) Cmd(gateway string) string { return s.Prefix + ".gw." + gateway + ".cmd" }

// Broadcast is where SendToAll is published, and sends to more than
// MaxRoutedNames uids or groups; every gateway subscribes. Gateways also
// accept sends to any uids or groups and UnGroup here (publishers from
// before interest routing).
func (s Subjects) Broadcast() string { return s.Prefix + ".bcast" }

// Group is where sends to group and its UnGroup are published; a gateway
// subscribes to it while it holds at least one member of group.
func (s Subjects) Group(group string) string { return s.Prefix + ".grp." + Token(group) }

// UID is where sends to uid are published; a gateway subscribes to it while
// it holds at least one connection bound to uid.
func (s Subjects) UID(uid string) string { return s.Prefix + ".uid." + Token(uid) }

// AllGroups matches every Group subject: a gateway with more distinct
// groups than it keeps subscriptions for subscribes to it instead.
func (s Subjects) AllGroups() string { return s.Prefix + ".grp.*" }

// AllUIDs matches every UID subject (see AllGroups).
func (s Subjects) AllUIDs() string { return s.Prefix + ".uid.*" }

// MaxRoutedNames is the most uids or groups a send names and still goes to
// their own subjects (one publish per distinct name, each with the whole
// list and a MsgID); a send naming more goes to Broadcast once.
const MaxRoutedNames = 8

// maxLiteralToken is the longest name (in bytes) that Token encodes
// reversibly; longer names are hashed.
const maxLiteralToken = 48

// Token encodes a uid or group name, any bytes, as one NATS subject token
// of at most 65 characters from [A-Za-z0-9_-]: "b" followed by the name in
// unpadded base64url (RFC 4648 §5) for names of up to 48 bytes, else "h"
// followed by the lower-case hex SHA-256 of the name. Two names share a
// token only through a SHA-256 collision, and even then a gateway delivers
// by its own index, so a shared token costs a message, never a wrong
// delivery.
func Token(name string) string {
	if len(name) <= maxLiteralToken {
		return "b" + base64.RawURLEncoding.EncodeToString([]byte(name))
	}
	sum := sha256.Sum256([]byte(name))
	return "h" + hex.EncodeToString(sum[:])
}

// DeadLetter is where gateways publish a DeadLetter for each event batch
// they gave up on (delivered the most times allowed, never acknowledged).
// Nobody has to subscribe: it is for whoever observes or replays them.
func (s Subjects) DeadLetter() string { return s.Prefix + ".deadletter" }

// Query is where scatter-gather queries are published; every gateway replies.
func (s Subjects) Query() string { return s.Prefix + ".query" }

// Heartbeat is where gateways announce themselves.
func (s Subjects) Heartbeat() string { return s.Prefix + ".hb" }

// Inbox is the inbox prefix of the connections of role: their reply
// subjects (requests, queries) are Inbox(role) + "." + a unique suffix,
// and only role may subscribe below it (see Permissions). A connection
// sets it with nats.CustomInboxPrefix (Options.InboxPrefix).
func (s Subjects) Inbox(role Role) string { return s.Prefix + ".inbox." + string(role) }
