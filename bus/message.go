package bus

// Version is the bus protocol version carried in EventBatch, Command and
// DeadLetter. Version 2 added Ack nacks, bounded redelivery and dead
// letters, and declared the HTTPRequest fields bytes (the same wire
// format as version 1's strings); version 3 added busy nacks (Ack.Busy).
// A gateway accepts commands of any of them.
const Version = 3

// VersionBusy is the first Version whose gateways understand busy nacks
// (Ack.Busy): a worker answers one only to a batch of this version or
// later.
const VersionBusy = 3

// EventType says what happened to a client.
type EventType int32

// The event types.
const (
	EventUnknown          EventType = 0
	EventConnect          EventType = 1
	EventWebSocketConnect EventType = 2
	EventMessage          EventType = 3
	EventClose            EventType = 4

	// EventDecodeError: a message that the listener's codec could not
	// decode, delivered instead of EventMessage when the listener's
	// decode_error policy is "event": Data is the message as received,
	// Error the codec's error.
	EventDecodeError EventType = 14
)

var eventTypeNames = [...]string{"unknown", "connect", "websocket_connect", "message", "close",
	EventDecodeError: "decode_error"}

// String returns the lower-case name of the event type.
func (t EventType) String() string {
	if t < 0 || int(t) >= len(eventTypeNames) || eventTypeNames[t] == "" {
		return "unknown"
	}
	return eventTypeNames[t]
}

// ActionType is what a worker asks the gateway to do to the batch's client.
type ActionType int32

// The action types.
const (
	ActionUnknown       ActionType = 0
	ActionSend          ActionType = 1
	ActionClose         ActionType = 2
	ActionBindUID       ActionType = 3
	ActionUnbindUID     ActionType = 4
	ActionJoinGroup     ActionType = 5
	ActionLeaveGroup    ActionType = 6
	ActionSetSession    ActionType = 7
	ActionUpdateSession ActionType = 8
	ActionDeleteSession ActionType = 9
	ActionReject        ActionType = 10
	ActionProtect       ActionType = 11 // Flag: on or off

	// Actions 20-25: connection control (docs/bus-protocol.md).

	ActionPauseRecv  ActionType = 20 // stop reading the client until ActionResumeRecv
	ActionResumeRecv ActionType = 21 // read the client again, from where it stopped
	ActionConfirm    ActionType = 22 // start reading a client of a delay_receive listener
	ActionSetBinary  ActionType = 23 // Flag: every later send to the client is a binary frame (on) or as usual (off)
	// ActionSendValue sends a structured value: Data is its neutral form
	// (JSON), which the gateway encodes with the client's listener codec
	// (docs/api.md, "Codecs").
	ActionSendValue ActionType = 30
)

// Op is the operation of a Command.
type Op int32

// The operations; their meaning is the API method of the same name (SPEC §4).
const (
	OpUnknown            Op = 0
	OpSendToClient       Op = 1
	OpSendToUID          Op = 2
	OpSendToGroup        Op = 3
	OpSendToAll          Op = 4
	OpIsOnline           Op = 5
	OpIsUIDOnline        Op = 6
	OpClientCount        Op = 7
	OpClientCountByGroup Op = 8
	OpClientList         Op = 9
	OpClientListByGroup  Op = 10
	OpClientListByUID    Op = 11
	OpClientInfo         Op = 12
	OpUIDList            Op = 13
	OpUIDListByGroup     Op = 14
	OpUIDCount           Op = 15
	OpUIDCountByGroup    Op = 16
	OpGroupList          Op = 17
	OpCloseClient        Op = 18
	OpBindUID            Op = 19
	OpUnbindUID          Op = 20
	OpJoinGroup          Op = 21
	OpLeaveGroup         Op = 22
	OpUngroup            Op = 23
	OpSetSession         Op = 24
	OpUpdateSession      Op = 25
	OpDeleteSession      Op = 26
	OpGetSession         Op = 27
	OpGroupSessions      Op = 28
	OpProtect            Op = 29 // Flag: on or off
	OpStats              Op = 30 // a query: Reply.Stats

	// Ops 50-69: calls of the GatewayWorker / imi ports (docs/api.md).

	OpCloseUID            Op = 50 // routed on the uid's subject; Arg: uid, Flag: force, Data: final message
	OpIsUIDsOnline        Op = 51 // a query: UIDs; Reply.Named: the uids with connections, Count = connections
	OpClientCountByGroups Op = 52 // a query: Groups; Reply.Named: the groups with members, Count = members
	OpClientListByUIDs    Op = 53 // a query: UIDs; Reply.Named: the uids with connections, Items = client ids

	// Ops 40-45: connection control, as the actions of the same name.

	OpPauseRecv         Op = 40 // Clients: one client
	OpResumeRecv        Op = 41 // Clients: one client
	OpConfirm           Op = 42 // Clients: one client
	OpSetBinary         Op = 43 // Clients: one client; Flag: on or off
	OpClientSessions    Op = 54 // a list query: Items = client ids after Cursor, Sessions = theirs
	OpGroupClientCounts Op = 55 // a query: Reply.Named = every group with members, Count = members; More past the bound
	OpGroupUIDCounts    Op = 56 // a query: Reply.Named = every group with bound members, Count = distinct uids, Items = the uids
	OpGroupClientLists  Op = 57 // a list query over groups: Items = group names after Cursor, Named = their client ids

	// Ops 80-89: the uid gates of dispatch by uid, gateway to gateway
	// only, on Subjects.UIDGate (docs/tasks.md, "Dispatch by uid").

	OpUIDGateAcquire Op = 80 // to the uid's owner: Arg uid, GateFrom, GateToken, GateLeaseMS; Flag: a renewal by the holder
	OpUIDGateRelease Op = 81 // to the uid's owner: Arg uid, GateFrom, GateToken
	OpUIDGateGrant   Op = 82 // owner to the waiter: Arg uid, GateFrom (the owner), GateToken
	OpUIDGateQueued  Op = 83 // owner to the waiter, answering an acquire it did not grant: Arg uid, GateFrom, GateToken
)

var opNames = [...]string{
	"unknown", "sendToClient", "sendToUid", "sendToGroup", "sendToAll", "isOnline",
	"isUidOnline", "getClientCount", "getClientCountByGroup", "getClientList",
	"getClientListByGroup", "getClientListByUid", "getClientInfo", "getUidList",
	"getUidListByGroup", "getUidCount", "getUidCountByGroup", "getGroupList",
	"closeClient", "bindUid", "unbindUid", "joinGroup", "leaveGroup", "unGroup",
	"setSession", "updateSession", "deleteSession", "getSession", "getClientSessionsByGroup",
	"protect", "getStats",
	OpCloseUID: "closeUid", OpIsUIDsOnline: "isUidsOnline", OpClientCountByGroups: "getClientCountByGroups",
	OpClientListByUIDs: "getClientListByUids",
	OpPauseRecv:        "pauseRecv", OpResumeRecv: "resumeRecv", OpConfirm: "confirm", OpSetBinary: "setBinary",
	OpClientSessions:    "getAllClientSessions",
	OpGroupClientCounts: "getAllGroupClientIdCount", OpGroupUIDCounts: "getAllGroupUidCount",
	OpGroupClientLists: "getAllGroupClientIdList",
	OpUIDGateAcquire:   "uidGateAcquire", OpUIDGateRelease: "uidGateRelease", OpUIDGateGrant: "uidGateGrant",
	OpUIDGateQueued: "uidGateQueued",
}

// String returns the lowerCamel API method name of the op.
func (o Op) String() string {
	if !o.Valid() {
		return "unknown"
	}
	return opNames[o]
}

// Valid reports whether o is a known operation.
// The numbers are not dense: unassigned numbers below the largest are not
// valid.
func (o Op) Valid() bool { return o > OpUnknown && int(o) < len(opNames) && opNames[o] != "" }

// Field bits of OpClientInfo (SPEC §4, GetClientInfo).
const (
	FieldRemoteIP   uint32 = 1
	FieldRemotePort uint32 = 2
	FieldUID        uint32 = 4
	FieldSession    uint32 = 8
	FieldGroups     uint32 = 16
	FieldSystem     uint32 = 32
	FieldAll        uint32 = 255
)

// Error codes carried in Reply.ErrorCode; the same codes appear in HTTP API
// error bodies.
const (
	ErrCodeInvalidClient  = "invalid_client"
	ErrCodeInvalidRequest = "invalid_request"
	ErrCodeNotFound       = "not_found"
	ErrCodeUnknownOp      = "unknown_method"
	ErrCodeInternal       = "internal"
	// ErrCodeOverloaded: the gateway refused a send because its outbound
	// backlog is past twice its bound (gateway.max_queued_bytes); retry
	// later.
	ErrCodeOverloaded = "overloaded"
)

// EventBatch carries events of one client from a gateway to a worker.
// Fields of type []byte and string decoded from a buffer may alias it.
type EventBatch struct {
	// Version is the protocol version of the gateway that sent it
	// (Version; 1 from gateways without nacks and dead letters).
	Version uint32
	// Gateway is the id of the gateway that owns the client.
	Gateway string
	// Delivery names the batch at its gateway; every Ack echoes it.
	Delivery uint64
	// Client is the client id.
	Client string
	// State is the client as of this batch (uid, groups, session, ...).
	State ClientState
	// Events are the client's events in the order they happened; never
	// empty.
	Events []Event
	// Attempt is 1 on the first delivery, one more on each redelivery.
	Attempt uint32
}

// EventBatches carries the EventBatch of several clients of one gateway
// in one bus message (subject Subjects.EventsMulti). Each batch keeps its
// own delivery id, attempt and redelivery; the reply subject of the
// message takes Acks messages that answer any of them.
type EventBatches struct {
	// Batches are the batches, each of one client; never empty.
	Batches []EventBatch
}

// Acks carries several Ack messages to one reply subject: the answer
// to the batches of EventBatches messages (each Ack names its delivery).
type Acks struct {
	// Acks are the answers, in the order the worker made them.
	Acks []Ack
}

// ClientState is what a gateway knows of a client.
type ClientState struct {
	// RemoteIP and RemotePort are the client's address as the gateway
	// sees it.
	RemoteIP   string
	RemotePort uint32
	// UID is the bound uid; empty when not bound.
	UID string
	// Groups are the client's groups, sorted.
	Groups []string
	// Session is a JSON object; nil when there is no session.
	Session []byte
	// Listener is the name of the listener that accepted the client.
	Listener string
	// Protocol is the listener's protocol: "ws", "tcp" or "udp".
	Protocol string
	// ConnectedUnixMs is when the connection opened; LastActiveUnixMs
	// when the gateway last received from it (Unix milliseconds).
	ConnectedUnixMs  int64
	LastActiveUnixMs int64
	// BytesIn, BytesOut, MessagesIn and MessagesOut count the client's
	// traffic since it connected.
	BytesIn     uint64
	BytesOut    uint64
	MessagesIn  uint64
	MessagesOut uint64
	// Gateway is the id of the gateway that holds the client.
	Gateway string
	// Protected exempts the client from pings and the idle timeout
	// (ActionProtect, OpProtect).
	Protected bool
	// Codec is the listener's codec: "" (raw), "json" or a registered
	// name. With a codec, messages arrive also as a structured value
	// (Event.Value) and ActionSendValue encodes with it.
	Codec string
}

// Event is one thing that happened to a client.
type Event struct {
	// Type says which event it is.
	Type EventType
	// Data is, for EventMessage, the payload, untouched.
	Data []byte
	// Binary is, for EventMessage, whether it arrived as a WebSocket
	// binary frame.
	Binary bool
	// Request is, for EventWebSocketConnect, the upgrade request; nil
	// otherwise.
	Request *HTTPRequest
	// CloseReason is, for EventClose, why the connection closed (a
	// gateway close reason such as "client_closed" or "idle_timeout").
	CloseReason string
	// TimeUnixMs is when the gateway saw the event (Unix milliseconds).
	TimeUnixMs int64
	// BeforeUpgrade is, for EventWebSocketConnect, whether the gateway
	// holds the upgrade until the batch's final ack (a listener with
	// upgrade_hook): ActionReject then answers the HTTP status Code
	// (400-599) with Arg as the body instead of a close code, any other
	// answer accepts, and EventConnect follows only once accepted.
	BeforeUpgrade bool
	// Value is, for EventMessage on a listener whose codec is neither
	// raw nor json, the decoded message in the neutral form (JSON); on a
	// json listener Data is already that form and Value is empty.
	Value []byte
	// Error is, for EventDecodeError, why the codec refused Data.
	Error string
}

// HTTPRequest is a WebSocket upgrade request as seen by the gateway. Its
// strings hold the raw bytes the client sent, not necessarily UTF-8; on
// the wire they are bytes fields.
type HTTPRequest struct {
	// Method is the request method ("GET").
	Method string
	// Path is the request target's path.
	Path string
	// Query is the raw query, without '?'.
	Query string
	// Headers are the header lines in the order received, Cookie
	// included.
	Headers []Header
	// Host is the Host header's value.
	Host string
}

// Header is one HTTP header line, raw bytes (see HTTPRequest).
type Header struct {
	// Name is the header's name as sent (any case).
	Name string
	// Value is its value, without the leading and trailing blanks.
	Value string
}

// Ack is a worker's answer to an EventBatch: a progress report
// (Progress), a final ack with the actions to apply, or a nack (Nack)
// that refuses the delivery so that the gateway publishes the batch again
// at once (or dead-letters it after its last delivery).
type Ack struct {
	// Delivery is the EventBatch.Delivery answered.
	Delivery uint64
	// Progress marks a progress report: the batch is still being
	// handled (it extends its deadline); its Actions are applied at once.
	Progress bool
	// Actions are changes to the batch's own client, applied in order
	// before the client's next batch is sent.
	Actions []Action
	// Worker is the worker's id, for logs and metrics.
	Worker string
	// Nack refuses the delivery: the gateway publishes the batch again at
	// once (or dead-letters it after its last delivery); Actions are
	// ignored.
	Nack bool
	// Attempt is, in a nack, the EventBatch.Attempt refused; 0 means
	// unknown (the batch could not be decoded). A gateway ignores a nack
	// of an attempt other than its latest.
	Attempt uint32
	// Error says, in a nack, why.
	Error string
	// Busy marks a nack of a batch the worker did not take because it
	// had no room (its backlog was full): the gateway publishes it again,
	// as the same attempt, once the workers have room (its in-flight
	// window shrinks to what they hold), so it spends no delivery. Send
	// it for batches of Version 3 or later only: an older gateway takes
	// it for a plain nack and publishes the batch again at once.
	Busy bool
}

// BusyNack is the busy nack of delivery's attempt from worker: the worker
// had no room and did not take the batch (see Ack.Busy).
func BusyNack(delivery uint64, attempt uint32, worker string) Ack {
	return Ack{Delivery: delivery, Nack: true, Busy: true, Attempt: attempt, Error: "busy", Worker: worker}
}

// Action is a change a worker asks for on the batch's own client.
type Action struct {
	// Type says which change; the fields below mean what the ActionType
	// constants say for it.
	Type ActionType
	// Data is the message (ActionSend, ActionClose's last message) or
	// the session JSON object (ActionSetSession, ActionUpdateSession).
	Data []byte
	// Arg is the uid (ActionBindUID), the group (ActionJoinGroup,
	// ActionLeaveGroup) or the reason (ActionReject; before the upgrade
	// the response body).
	Arg string
	// Flag is binary (ActionSend), force (ActionClose) or on
	// (ActionProtect, ActionSetBinary).
	Flag bool
	// Code is ActionReject's status (the close code is 4000 + Code; before
	// the upgrade, see Event.BeforeUpgrade, the HTTP status, 400-599).
	Code uint32
}

// Command asks one gateway (or all) to do or answer something.
type Command struct {
	// Version is the protocol version of the caller.
	Version uint32
	// Op says what to do; the fields below mean what the Op constants say
	// for it.
	Op Op
	// Clients, UIDs and Groups are the client ids, uids and groups the
	// command names.
	Clients []string
	UIDs    []string
	Groups  []string
	// Data is the message of a send or close, or a session JSON object.
	Data []byte
	// Without are client ids excluded from a send.
	Without []string
	// Cursor is, for list ops, where the page starts: only items after
	// it (byte order).
	Cursor string
	// Limit is, for list ops, the most items in the page.
	Limit uint32
	// Fields are OpClientInfo's field bits (FieldAll for all).
	Fields uint32
	// Flag is force (OpCloseClient, OpCloseUID), binary (sends), on
	// (OpProtect) or unique (uid and group lists).
	Flag bool
	// Arg is the uid (OpBindUID, OpCloseUID) or the group (OpJoinGroup,
	// OpLeaveGroup).
	Arg string
	// MsgID, when not 0, names a send published on several uid or group
	// subjects: a gateway executes the first copy it receives and drops
	// later ones with the same MsgID (see docs/bus-protocol.md).
	MsgID uint64
	// Listeners, when not empty, scope the command to the connections
	// accepted by the listeners of these names: the others are left out
	// of sends, counts and lists, and are not found by client commands.
	Listeners []string
	// Structured marks a send whose Data is a structured value in the
	// neutral form (JSON), encoded by each listener's codec.
	Structured bool
	// GateFrom is, in ops 80-82 (uid gates), the gateway that sends.
	GateFrom string
	// GateToken is, in ops 80-82, the waiting or holding gateway's number
	// for one hold of the uid's gate.
	GateToken uint64
	// GateLeaseMS is, in OpUIDGateAcquire, how long the owner keeps the
	// hold or the wait without a renewal, in milliseconds.
	GateLeaseMS uint32
}

// Reply is a gateway's answer to a Command.
type Reply struct {
	// Gateway is the id of the gateway that answers.
	Gateway string
	// ErrorCode is empty on success, else one of the ErrCode constants;
	// Error says more.
	ErrorCode string
	Error     string
	// Found says the client or uid exists on this gateway.
	Found bool
	// Count is a count op's answer.
	Count uint64
	// Items are a list op's page: sorted, all after the cursor, at most
	// the limit.
	Items []string
	// State is OpClientInfo's answer; fields not asked for are empty.
	State *ClientState
	// Session is OpGetSession's answer, a JSON object.
	Session []byte
	// More says a list op has items after the last one.
	More bool
	// Sessions are OpGroupSessions' answer.
	Sessions []ClientSession
	// Peers are, in query replies, the live gateways the answering
	// gateway knows, itself included.
	Peers []string
	// Stats is OpStats' answer: a JSON object, GatewayStats.
	Stats []byte
	// Named is a batch query's answer: one entry per name asked for that
	// the gateway has (ops 50-69).
	Named []NameCount
}

// NameCount is a batch query's answer for one uid or group.
type NameCount struct {
	// Name is the uid or group.
	Name string
	// Count is its count on the answering gateway.
	Count uint64
	// Items are, for OpClientListByUIDs, the uid's client ids, sorted.
	Items []string
}

// ClientSession pairs a client id with its session (a JSON object).
type ClientSession struct {
	// Client is the client id.
	Client string
	// Session is its session, a JSON object.
	Session []byte
}

// Dead-letter reasons, DeadLetter.Reason.
const (
	DeadLetterTimeout = "timeout" // the last delivery got no final ack in time
	DeadLetterNack    = "nack"    // a worker nacked the last delivery
)

// DeadLetter is what a gateway publishes on Subjects.DeadLetter when it
// gives up on an event batch after its last delivery.
type DeadLetter struct {
	// Version is the gateway's protocol version.
	Version uint32
	// Batch is the batch as last published; its Attempt is the
	// deliveries made.
	Batch EventBatch
	// Reason is DeadLetterTimeout or DeadLetterNack.
	Reason string
	// Error is the last nack's error, if any.
	Error string
	// Worker is the worker of the last nack or progress ack, if any.
	Worker string
	// TimeUnixMs is when the gateway gave up (Unix milliseconds).
	TimeUnixMs int64
}

// Heartbeat announces a gateway on the bus.
type Heartbeat struct {
	// Gateway is the gateway's id.
	Gateway string
	// Leaving says the gateway is stopping: forget it at once.
	Leaving bool
	// IntervalMs is how often the gateway publishes a heartbeat; it
	// expires after membership.ExpiryIntervals of them without one.
	IntervalMs uint32
	// StartedUnixMs is when the gateway started (Unix milliseconds).
	StartedUnixMs int64
	// Clients is its open connections.
	Clients uint64
	// Listeners are the names of its listeners, sorted (API clients
	// check a listener scope against them).
	Listeners []string
	// Overloaded says the gateway's outbound backlog (bytes queued for its
	// clients, or commands waiting) passed its bound: API clients refuse
	// new sends (api.ErrOverloaded) until a heartbeat clears it. The
	// gateway publishes a heartbeat at once when this changes.
	Overloaded bool
}
