package bus

// Version is the bus protocol version carried in EventBatch, Command and
// DeadLetter. Version 2 added Ack nacks, bounded redelivery and dead
// letters, and declared the HTTPRequest fields bytes (the same wire
// format as version 1's strings); a gateway accepts commands of either.
const Version = 2

// EventType says what happened to a client.
type EventType int32

// The event types.
const (
	EventUnknown          EventType = 0
	EventConnect          EventType = 1
	EventWebSocketConnect EventType = 2
	EventMessage          EventType = 3
	EventClose            EventType = 4
)

var eventTypeNames = [...]string{"unknown", "connect", "websocket_connect", "message", "close"}

// String returns the lower-case name of the event type.
func (t EventType) String() string {
	if t < 0 || int(t) >= len(eventTypeNames) {
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
)

// EventBatch carries events of one client from a gateway to a worker.
// Fields of type []byte and string decoded from a buffer may alias it.
type EventBatch struct {
	Version  uint32
	Gateway  string
	Delivery uint64
	Client   string
	State    ClientState
	Events   []Event
	Attempt  uint32
}

// ClientState is what a gateway knows of a client.
type ClientState struct {
	RemoteIP         string
	RemotePort       uint32
	UID              string
	Groups           []string
	Session          []byte // JSON object; nil when there is no session
	Listener         string
	Protocol         string
	ConnectedUnixMs  int64
	LastActiveUnixMs int64
	BytesIn          uint64
	BytesOut         uint64
	MessagesIn       uint64
	MessagesOut      uint64
	Gateway          string
	Protected        bool // exempt from pings and the idle timeout
}

// Event is one thing that happened to a client.
type Event struct {
	Type        EventType
	Data        []byte
	Binary      bool
	Request     *HTTPRequest
	CloseReason string
	TimeUnixMs  int64
}

// HTTPRequest is a WebSocket upgrade request as seen by the gateway. Its
// strings hold the raw bytes the client sent, not necessarily UTF-8; on
// the wire they are bytes fields.
type HTTPRequest struct {
	Method  string
	Path    string
	Query   string
	Headers []Header
	Host    string
}

// Header is one HTTP header line, raw bytes (see HTTPRequest).
type Header struct {
	Name  string
	Value string
}

// Ack is a worker's answer to an EventBatch: a progress report
// (Progress), a final ack with the actions to apply, or a nack (Nack)
// that refuses the delivery so that the gateway publishes the batch again
// at once (or dead-letters it after its last delivery).
type Ack struct {
	Delivery uint64
	Progress bool
	Actions  []Action
	Worker   string
	Nack     bool
	// Attempt is, in a nack, the EventBatch.Attempt refused; 0 means
	// unknown (the batch could not be decoded). A gateway ignores a nack
	// of an attempt other than its latest.
	Attempt uint32
	// Error says, in a nack, why.
	Error string
}

// Action is a change a worker asks for on the batch's own client.
type Action struct {
	Type ActionType
	Data []byte
	Arg  string
	Flag bool
	Code uint32
}

// Command asks one gateway (or all) to do or answer something.
type Command struct {
	Version uint32
	Op      Op
	Clients []string
	UIDs    []string
	Groups  []string
	Data    []byte
	Without []string
	Cursor  string
	Limit   uint32
	Fields  uint32
	Flag    bool
	Arg     string
	// MsgID, when not 0, names a send published on several uid or group
	// subjects: a gateway executes the first copy it receives and drops
	// later ones with the same MsgID (see docs/bus-protocol.md).
	MsgID uint64
}

// Reply is a gateway's answer to a Command.
type Reply struct {
	Gateway   string
	ErrorCode string
	Error     string
	Found     bool
	Count     uint64
	Items     []string
	State     *ClientState
	Session   []byte
	More      bool
	Sessions  []ClientSession
	Peers     []string // query replies: live gateways the answering gateway knows
	// Stats is OpStats' answer: a JSON object, GatewayStats.
	Stats []byte
	// Named is a batch query's answer: one entry per name asked for that
	// the gateway has (ops 50-69).
	Named []NameCount
}

// NameCount is a batch query's answer for one uid or group.
type NameCount struct {
	Name  string
	Count uint64
	Items []string // OpClientListByUIDs: the uid's client ids, sorted
}

// ClientSession pairs a client id with its session (a JSON object).
type ClientSession struct {
	Client  string
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
	Version    uint32
	Batch      EventBatch // as last published; Attempt is the deliveries made
	Reason     string     // DeadLetterTimeout or DeadLetterNack
	Error      string     // the nack's error, if any
	Worker     string     // the worker of the last nack or progress ack, if any
	TimeUnixMs int64
}

// Heartbeat announces a gateway on the bus.
type Heartbeat struct {
	Gateway       string
	Leaving       bool
	IntervalMs    uint32
	StartedUnixMs int64
	Clients       uint64
}
