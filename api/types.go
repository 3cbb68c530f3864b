package api

import (
	"context"
	"errors"
	"time"
)

// Errors returned by API methods. Callers branch with errors.Is.
var (
	// ErrInvalidClient: the string is not a well-formed client id.
	ErrInvalidClient = errors.New("api: invalid client id")
	// ErrNotFound: the client is not connected (closed, or never existed).
	ErrNotFound = errors.New("api: client not found")
	// ErrInvalidArgument: an argument is missing or out of range.
	ErrInvalidArgument = errors.New("api: invalid argument")
	// ErrTimeout: the gateway that owns the client did not answer in time.
	ErrTimeout = errors.New("api: gateway did not answer in time")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("api: client closed")
	// ErrOverloaded: a send was refused because a gateway's outbound
	// backlog is past its bound (gateway.max_queued_bytes): the Client
	// refuses every send while a live gateway's heartbeat says it is
	// overloaded, and a gateway refuses a send that reaches it past twice
	// the bound. Nothing was queued; retry later (HTTP: 503 overloaded
	// with Retry-After).
	ErrOverloaded = errors.New("api: gateway overloaded, send refused")
)

// Session is a connection's key-value session. Values are anything that
// encodes to JSON; on the bus a session travels as a JSON object.
type Session map[string]any

// Coverage says whether a cluster-wide answer heard from every live gateway.
// A gateway that did not answer within the query timeout is named in
// Missing and makes Partial true; the answer is then built from the others.
type Coverage struct {
	Partial bool
	Missing []string // gateway ids, sorted
}

// Count is the answer of a counting query.
type Count struct {
	Value int
	Coverage
}

// Bool is the answer of a cluster-wide yes/no query.
type Bool struct {
	Value bool
	Coverage
}

// PageRequest selects one page of a list: the items after Cursor (empty for
// the first page), at most Limit of them (0 means DefaultLimit; more than
// MaxLimit is cut to MaxLimit).
type PageRequest struct {
	Cursor string
	Limit  int
}

// Page limits.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Page is one page of a list. Items are in ascending byte order; NextCursor
// is empty on the last page. Walking pages while clients come and go never
// repeats an item and never skips one that stayed present the whole time.
type Page struct {
	Items      []string
	NextCursor string
	Coverage
}

// Fields selects what GetClientInfo returns (SPEC §4): OR the bits.
type Fields uint32

// The GetClientInfo field bits.
const (
	FieldRemoteIP   Fields = 1
	FieldRemotePort Fields = 2
	FieldUID        Fields = 4
	FieldSession    Fields = 8
	FieldGroups     Fields = 16
	FieldSystem     Fields = 32
	FieldAll        Fields = 255
)

// ClientInfo describes one connection. Only the fields asked for are set.
type ClientInfo struct {
	RemoteIP   string      `json:"remote_ip,omitempty"`
	RemotePort int         `json:"remote_port,omitempty"`
	UID        *string     `json:"uid,omitempty"`     // set (maybe to "") when asked for
	Session    Session     `json:"session,omitempty"` // asked for: non-nil, maybe empty
	Groups     []string    `json:"groups,omitempty"`  // asked for: non-nil, maybe empty
	System     *SystemInfo `json:"system,omitempty"`
}

// SystemInfo is the "system" part of ClientInfo.
type SystemInfo struct {
	Listener    string    `json:"listener"`
	Protocol    string    `json:"protocol"`
	Gateway     string    `json:"gateway"`
	ConnectedAt time.Time `json:"connected_at"`
	LastActive  time.Time `json:"last_active"`
	BytesIn     uint64    `json:"bytes_in"`
	BytesOut    uint64    `json:"bytes_out"`
	MessagesIn  uint64    `json:"messages_in"`
	MessagesOut uint64    `json:"messages_out"`
	// Protected: exempt from pings and the idle timeout (API.Protect).
	Protected bool `json:"protected"`
}

// ClientSessions maps client ids to their sessions.
type ClientSessions struct {
	Sessions map[string]Session
	Coverage
}

// API is every method of SPEC §4. Client implements it over the bus; a
// worker handler's Context hands out the same interface.
//
// Sends return once the bus has taken the message: they do not report
// whether anyone received it (use IsOnline / IsUIDOnline). Messages from one
// caller to one client arrive in the order they were sent. A message is
// bytes and arrives untouched; the caller may reuse msg after the call.
//
// Mutations (bind, join, session, close) return once the owning gateway has
// applied them, so the client's next event sees them. A client id that is
// malformed gives ErrInvalidClient; one of a closed connection gives
// ErrNotFound from mutations and reads, and is silently skipped by sends.
//
// Cluster-wide queries ask every live gateway and never fail because one is
// slow or dead: that gateway is reported in Coverage instead.
type API interface {
	SendToClient(ctx context.Context, client string, msg []byte) error
	SendToUID(ctx context.Context, uids []string, msg []byte, without ...string) error
	SendToGroup(ctx context.Context, groups []string, msg []byte, without ...string) error
	SendToAll(ctx context.Context, msg []byte, without ...string) error

	IsOnline(ctx context.Context, client string) (bool, error)
	IsUIDOnline(ctx context.Context, uid string) (Bool, error)
	GetClientCount(ctx context.Context) (Count, error)
	GetClientCountByGroup(ctx context.Context, group string) (Count, error)
	GetClientList(ctx context.Context, page PageRequest) (Page, error)
	GetClientListByGroup(ctx context.Context, group string, page PageRequest) (Page, error)
	GetClientListByUID(ctx context.Context, uid string, page PageRequest) (Page, error)
	GetClientInfo(ctx context.Context, client string, fields Fields) (ClientInfo, error)
	GetUIDList(ctx context.Context, unique bool, page PageRequest) (Page, error)
	GetUIDListByGroup(ctx context.Context, group string, unique bool, page PageRequest) (Page, error)
	// GetUIDCount counts distinct bound uids exactly when uniquePercent is 0;
	// otherwise it returns the originals' cheap estimate: the sum of each
	// gateway's distinct uids times uniquePercent (0 < uniquePercent ≤ 1),
	// truncated toward zero as the originals' intval.
	GetUIDCount(ctx context.Context, uniquePercent float64) (Count, error)
	GetUIDCountByGroup(ctx context.Context, group string) (Count, error)
	GetGroupList(ctx context.Context, unique bool, page PageRequest) (Page, error)
	GetClientSessionsByGroup(ctx context.Context, group string) (ClientSessions, error)

	CloseClient(ctx context.Context, client string, force bool) error
	// CloseClientWith closes client after a final message msg (GatewayWorker's
	// closeClient($id, $message)): msg is queued last, flushed, then the
	// connection closes; force drops what was queued before msg. An empty
	// msg is CloseClient.
	CloseClientWith(ctx context.Context, client string, force bool, msg []byte) error
	// CloseUID closes every connection bound to uid (imi's closeByFlag),
	// each after msg when msg is non-empty; see CloseClientWith. It returns
	// once the bus has taken the command.
	CloseUID(ctx context.Context, uid string, force bool, msg []byte) error
	// SendToClients sends msg to each client once, one bus message per
	// gateway (GatewayWorker's sendToAll($data, $client_ids)); at most
	// MaxBatchNames clients.
	SendToClients(ctx context.Context, clients []string, msg []byte) error
	// IsUIDsOnline reports for each uid whether it has a connection, in one
	// query round (GatewayClient's isUidsOnline); at most MaxBatchNames.
	IsUIDsOnline(ctx context.Context, uids []string) (Bools, error)
	// GetClientCountByGroups counts the members of each group, in one query
	// round (GatewayClient's batchGetClientCountByGroup); at most
	// MaxBatchNames.
	GetClientCountByGroups(ctx context.Context, groups []string) (Counts, error)
	// GetClientListByUIDs returns the client ids of each uid, in one query
	// round (GatewayClient's batchGetClientIdByUid); at most MaxBatchNames.
	GetClientListByUIDs(ctx context.Context, uids []string) (ClientLists, error)
	// GetAllClientSessions returns one page of every connection's session
	// by client id (GatewayWorker's getAllClientSessions), one query
	// round per page.
	GetAllClientSessions(ctx context.Context, page PageRequest) (SessionPage, error)
	// GetAllGroupClientIDCount counts the members of every group
	// (getAllGroupClientIdCount), in one query round.
	GetAllGroupClientIDCount(ctx context.Context) (GroupCounts, error)
	// GetAllGroupUIDCount counts the distinct uids of every group
	// (getAllGroupUidCount), in one query round.
	GetAllGroupUIDCount(ctx context.Context) (GroupCounts, error)
	// GetAllGroupClientIDList returns one page of groups with their
	// client ids (getAllGroupClientIdList), one query round per page.
	GetAllGroupClientIDList(ctx context.Context, page PageRequest) (GroupLists, error)

	// SendValue sends a structured value, encoded by each recipient's
	// listener codec once per codec (imi's send beside sendRaw).
	SendValue(ctx context.Context, to Target, v any) error
	// OnListeners returns a view of the API that sees only the
	// connections of the named listeners (imi's server name argument);
	// an unknown name fails each call with ErrUnknownListener.
	OnListeners(names ...string) API
	BindUID(ctx context.Context, client, uid string) error
	UnbindUID(ctx context.Context, client string) error
	JoinGroup(ctx context.Context, client, group string) error
	LeaveGroup(ctx context.Context, client, group string) error
	UnGroup(ctx context.Context, group string) error
	SetSession(ctx context.Context, client string, s Session) error
	UpdateSession(ctx context.Context, client string, s Session) error
	DeleteSession(ctx context.Context, client string) error
	GetSession(ctx context.Context, client string) (Session, error)

	// Protect exempts client from its listener's pings and idle timeout
	// (on) or ends the exemption (off, which restarts its idle clock).
	// SPEC §8 "protect".
	Protect(ctx context.Context, client string, on bool) error

	// PauseRecv stops reading client: what it sends waits in its socket
	// and TCP flow control holds it back; pings and the idle timeout
	// leave it alone. ResumeRecv reads it again from where it stopped,
	// nothing lost. A UDP client cannot pause (ErrInvalidArgument).
	PauseRecv(ctx context.Context, client string) error
	ResumeRecv(ctx context.Context, client string) error
	// Confirm starts reading a client of a delay_receive listener (it is
	// closed with reason confirm_timeout if not confirmed in time); on
	// any other client it does nothing.
	Confirm(ctx context.Context, client string) error
	// SetBinary makes every later send to client a WebSocket binary
	// frame, whatever the message holds and whatever the send asks (on),
	// or ends that (off). No effect on TCP and UDP clients.
	SetBinary(ctx context.Context, client string, on bool) error
}
