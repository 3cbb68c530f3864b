package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/gatework/gatework/api"
)

// method is one entry of the dispatch table: POST /api/<name>.
type method struct {
	name    string
	aliases []string // other names dispatched to the same method
	summary string
	result  resultKind
	params  []param
	// invoke decodes body into the method's params, validates them and
	// calls the API. Errors are *httpError for bad input, else the API's.
	invoke func(ctx context.Context, a api.API, body []byte) (reply, error)
	// maxWait, when not 0, says the method bounds its own wait with a
	// parameter of at most maxWait (taskWait's timeout_ms): the handler's
	// Config.Timeout does not apply, and the call's context ends
	// maxWait plus selfTimedSlack after it starts (or when the client
	// goes away).
	maxWait time.Duration
}

// selfTimedSlack is the room a self-timed method's context leaves after
// its longest wait, for the answer that ends the wait to arrive.
const selfTimedSlack = 2 * time.Second

// resultKind is the shape of a method's "result"; openapi.go has a schema
// for each.
type resultKind int

const (
	resultNull            resultKind = iota // actions: null
	resultBool                              // true or false
	resultCoveredBool                       // boolean, with partial/missing beside result
	resultCoveredCount                      // integer, with partial/missing beside result
	resultPage                              // {items, next_cursor, partial, missing}
	resultClientInfo                        // the keys asked for
	resultSession                           // a session object
	resultCoveredSessions                   // {client: session}, with partial/missing beside result
	resultCoveredStats                      // api.Stats, with partial/missing beside result
	resultCoveredBoolMap                    // {name: boolean}, with partial/missing beside result
	resultCoveredCountMap                   // {name: integer}, with partial/missing beside result
	resultCoveredListMap                    // {name: [string]}, with partial/missing beside result
	resultTaskID                            // a task id (string)
	resultTaskOutcome                       // {result, result_base64, error}
	resultSessionPage                       // {sessions, next_cursor, partial, missing}
	resultGroupCounts                       // {counts, truncated}, with partial/missing beside result
	resultGroupListPage                     // {groups, next_cursor, partial, missing}
)

// reply is a method's success: result, plus coverage for cluster-wide
// answers that carry partial/missing beside the result.
type reply struct {
	result   any
	coverage *api.Coverage
}

// def builds a table entry whose params are the fields of P and the
// listener scope (listener, listeners: the call goes to
// api.API.OnListeners of them).
func def[P any](name string, kind resultKind, summary string, call func(ctx context.Context, a api.API, p *P) (reply, error)) *method {
	return define(name, kind, summary, true, call)
}

// defUnscoped is def without the listener scope.
func defUnscoped[P any](name string, kind resultKind, summary string, call func(ctx context.Context, a api.API, p *P) (reply, error)) *method {
	return define(name, kind, summary, false, call)
}

// scopeParams is the listener scope every scoped method takes.
type scopeParams struct {
	Listener  *string  `json:"listener" doc:"limit the call to the connections of this listener (its name in the gateways' config); combined with listeners; a name no live gateway has is 400 unknown_listener"`
	Listeners []string `json:"listeners" doc:"limit the call to the connections of these listeners; combined with listener"`
}

var scopeParamList = paramsOf(reflect.TypeFor[scopeParams]())

func define[P any](name string, kind resultKind, summary string, scoped bool, call func(ctx context.Context, a api.API, p *P) (reply, error)) *method {
	ps := paramsOf(reflect.TypeFor[P]())
	proto := new(P)
	setDefaults(reflect.ValueOf(proto), ps)
	all := ps
	if scoped {
		all = append(slices.Clip(ps), scopeParamList...)
	}
	return &method{
		name:    name,
		summary: summary,
		result:  kind,
		params:  all,
		invoke: func(ctx context.Context, a api.API, body []byte) (reply, error) {
			p := new(P)
			*p = *proto
			if !scoped {
				if err := decodeParams(body, ps, p); err != nil {
					return reply{}, err
				}
				return call(ctx, a, p)
			}
			var sp scopeParams
			if err := decodeInto(body, paramSet{ps, p}, paramSet{scopeParamList, &sp}); err != nil {
				return reply{}, err
			}
			if names := combine(sp.Listener, sp.Listeners); len(names) > 0 {
				if slices.Contains(names, "") {
					return reply{}, fieldError("listeners", "empty listener name")
				}
				if len(names) > api.MaxScopeListeners {
					return reply{}, fieldError("listeners", "%d names, at most %d", len(names), api.MaxScopeListeners)
				}
				a = a.OnListeners(names...)
			}
			return call(ctx, a, p)
		},
	}
}

func (m *method) alias(names ...string) *method {
	m.aliases = append(m.aliases, names...)
	return m
}

// Parameter structs. Tags are described at param in params.go.

type noParams struct{}

type clientParams struct {
	Client string `json:"client" required:"true" doc:"client id of the connection"`
}

type groupParams struct {
	Group string `json:"group" required:"true" doc:"group name"`
}

type uidParams struct {
	UID string `json:"uid" required:"true" doc:"user id"`
}

type messageParams struct {
	Message       *string `json:"message" oneof:"message" doc:"the message as a UTF-8 string, sent as is; exactly one of message, message_base64 and data"`
	MessageBase64 *string `json:"message_base64" oneof:"message" doc:"the message as standard base64 (RFC 4648, padded) for arbitrary bytes; exactly one of message, message_base64 and data"`
	Data          anyJSON `json:"data" oneof:"message" doc:"a structured value (any JSON value), encoded by each recipient's listener codec once per codec: a raw or json listener gets its JSON text; exactly one of message, message_base64 and data"`
}

// anyJSON is a request field that holds any JSON value, kept as its text;
// absent or null is nil.
type anyJSON = json.RawMessage

// send calls raw with the message, or value with the structured data.
func (m *messageParams) send(raw func(msg []byte) error, value func(v any) error) error {
	if m.Data != nil && string(m.Data) != "null" {
		if m.Message != nil || m.MessageBase64 != nil {
			return invalidRequest(`give only one of "message", "message_base64" and "data"`)
		}
		return value(m.Data)
	}
	msg, err := m.bytes()
	if err != nil {
		return err
	}
	return raw(msg)
}

// bytes is the message to send.
func (m *messageParams) bytes() ([]byte, error) {
	switch {
	case m.Message != nil && m.MessageBase64 != nil:
		return nil, invalidRequest(`give only one of "message" and "message_base64", not both`)
	case m.Message != nil:
		return []byte(*m.Message), nil
	case m.MessageBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*m.MessageBase64)
		if err != nil {
			var ce base64.CorruptInputError
			if errors.As(err, &ce) {
				return nil, fieldError("message_base64", "invalid base64 at byte %d", int64(ce))
			}
			return nil, fieldError("message_base64", "invalid base64")
		}
		return b, nil
	}
	return nil, invalidRequest(`one of "message", "message_base64" and "data" is required`)
}

type withoutParams struct {
	Without []string `json:"without" doc:"client ids that must not receive the message"`
}

type pageParams struct {
	Cursor string `json:"cursor" doc:"next_cursor of the previous page; empty or absent for the first page"`
	Limit  int    `json:"limit" min:"0" doc:"at most this many items; 0 or absent means 100, more than 10000 is cut to 10000"`
}

func (p pageParams) page() api.PageRequest { return api.PageRequest{Cursor: p.Cursor, Limit: p.Limit} }

type uniqueParams struct {
	Unique bool `json:"unique" default:"true" doc:"de-duplicate across gateways"`
}

type sendToClientParams struct {
	clientParams
	messageParams
}

type sendToUIDParams struct {
	UID  *string  `json:"uid" anyof:"uid" doc:"user id; combined with uids (repeats dropped)"`
	UIDs []string `json:"uids" anyof:"uid" doc:"user ids; combined with uid (repeats dropped)"`
	messageParams
	withoutParams
}

type sendToGroupParams struct {
	Group  *string  `json:"group" anyof:"group" doc:"group name; combined with groups (repeats dropped)"`
	Groups []string `json:"groups" anyof:"group" doc:"group names; combined with group (repeats dropped)"`
	messageParams
	withoutParams
}

type sendToAllParams struct {
	messageParams
	withoutParams
}

type groupPageParams struct {
	groupParams
	pageParams
}

type uidPageParams struct {
	uidParams
	pageParams
}

type clientInfoParams struct {
	clientParams
	Fields int `json:"fields" default:"255" min:"0" max:"255" doc:"bits of the keys to return: remote_ip 1, remote_port 2, uid 4, session 8, groups 16, system 32; 255 is all"`
}

type uidListParams struct {
	uniqueParams
	pageParams
}

type groupUIDListParams struct {
	groupParams
	uniqueParams
	pageParams
}

type uidCountParams struct {
	UniquePercent float64 `json:"unique_percent" gt:"0" max:"1" doc:"absent: count distinct uids exactly; given: the cheap estimate, the sum of each gateway's distinct uids times unique_percent, truncated toward zero as the originals' intval"`
}

type closeParams struct {
	clientParams
	Force bool `json:"force" default:"false" doc:"drop unsent data and close at once; otherwise queued data is flushed first"`
}

type protectParams struct {
	clientParams
	Protect bool `json:"protect" default:"true" doc:"true exempts the connection from pings and the idle timeout; false ends the exemption (its idle clock starts over)"`
}

type binaryParams struct {
	clientParams
	Binary bool `json:"binary" default:"true" doc:"true: every later send to the connection is a WebSocket binary frame, whatever the message holds; false: as its listener's message_type says. No effect on tcp and udp connections"`
}

type bindParams struct {
	clientParams
	uidParams
}

type clientGroupParams struct {
	clientParams
	groupParams
}

type sessionParams struct {
	clientParams
	Session api.Session `json:"session" required:"true" doc:"the session: a JSON object"`
}

// methodTable is every method of api.API, in SPEC §4 order. It drives
// dispatch, GET /api and the OpenAPI document.
var methodTable = []*method{
	def("sendToClient", resultNull, "Send a message to one connection. A message over 65,507 bytes waits for the gateway's answer: invalid_request when the connection cannot take it (a UDP client: one datagram per message).",
		func(ctx context.Context, a api.API, p *sendToClientParams) (reply, error) {
			return reply{}, p.send(
				func(msg []byte) error { return a.SendToClient(ctx, p.Client, msg) },
				func(v any) error { return a.SendValue(ctx, api.Target{Clients: []string{p.Client}}, v) })
		}),
	def("sendToUid", resultNull, "Send a message to every connection bound to the uid(s), except the ids in without.",
		func(ctx context.Context, a api.API, p *sendToUIDParams) (reply, error) {
			uids := combine(p.UID, p.UIDs)
			if len(uids) == 0 {
				return reply{}, fieldError("uids", "want at least one uid")
			}
			return reply{}, p.send(
				func(msg []byte) error { return a.SendToUID(ctx, uids, msg, p.Without...) },
				func(v any) error { return a.SendValue(ctx, api.Target{UIDs: uids, Without: p.Without}, v) })
		}),
	def("sendToGroup", resultNull, "Send a message to every member of the group(s), each connection once, except the ids in without.",
		func(ctx context.Context, a api.API, p *sendToGroupParams) (reply, error) {
			groups := combine(p.Group, p.Groups)
			if len(groups) == 0 {
				return reply{}, fieldError("groups", "want at least one group")
			}
			return reply{}, p.send(
				func(msg []byte) error { return a.SendToGroup(ctx, groups, msg, p.Without...) },
				func(v any) error { return a.SendValue(ctx, api.Target{Groups: groups, Without: p.Without}, v) })
		}),
	def("sendToAll", resultNull, "Send a message to every connection on every gateway, except the ids in without.",
		func(ctx context.Context, a api.API, p *sendToAllParams) (reply, error) {
			return reply{}, p.send(
				func(msg []byte) error { return a.SendToAll(ctx, msg, p.Without...) },
				func(v any) error { return a.SendValue(ctx, api.Target{All: true, Without: p.Without}, v) })
		}),
	def("isOnline", resultBool, "Whether the connection is open.",
		func(ctx context.Context, a api.API, p *clientParams) (reply, error) {
			ok, err := a.IsOnline(ctx, p.Client)
			return reply{result: ok}, err
		}),
	def("isUidOnline", resultCoveredBool, "Whether at least one connection is bound to the uid.",
		func(ctx context.Context, a api.API, p *uidParams) (reply, error) {
			b, err := a.IsUIDOnline(ctx, p.UID)
			return covered(b.Value, b.Coverage), err
		}),
	def("getClientCount", resultCoveredCount, "Number of open connections, cluster-wide.",
		func(ctx context.Context, a api.API, _ *noParams) (reply, error) {
			c, err := a.GetClientCount(ctx)
			return covered(c.Value, c.Coverage), err
		}),
	def("getClientCountByGroup", resultCoveredCount, "Number of members of the group.",
		func(ctx context.Context, a api.API, p *groupParams) (reply, error) {
			c, err := a.GetClientCountByGroup(ctx, p.Group)
			return covered(c.Value, c.Coverage), err
		}),
	def("getClientList", resultPage, "All client ids, one page at a time.",
		func(ctx context.Context, a api.API, p *pageParams) (reply, error) {
			pg, err := a.GetClientList(ctx, p.page())
			return pageReply(pg), err
		}),
	def("getClientListByGroup", resultPage, "Client ids of the members of the group, one page at a time.",
		func(ctx context.Context, a api.API, p *groupPageParams) (reply, error) {
			pg, err := a.GetClientListByGroup(ctx, p.Group, p.page())
			return pageReply(pg), err
		}),
	def("getClientListByUid", resultPage, "Client ids of the connections bound to the uid, one page at a time.",
		func(ctx context.Context, a api.API, p *uidPageParams) (reply, error) {
			pg, err := a.GetClientListByUID(ctx, p.UID, p.page())
			return pageReply(pg), err
		}),
	def("getClientInfo", resultClientInfo, "What is known of one connection: only the keys selected by fields.",
		func(ctx context.Context, a api.API, p *clientInfoParams) (reply, error) {
			f := api.Fields(p.Fields)
			if f == 0 {
				f = api.FieldAll // 0 means all, as on the bus and in the Go client
			}
			info, err := a.GetClientInfo(ctx, p.Client, f)
			return reply{result: clientInfoResult(info, f)}, err
		}),
	def("getUidList", resultPage, "Bound uids, cluster-wide, one page at a time.",
		func(ctx context.Context, a api.API, p *uidListParams) (reply, error) {
			pg, err := a.GetUIDList(ctx, p.Unique, p.page())
			return pageReply(pg), err
		}),
	def("getUidListByGroup", resultPage, "Bound uids of the members of the group, one page at a time.",
		func(ctx context.Context, a api.API, p *groupUIDListParams) (reply, error) {
			pg, err := a.GetUIDListByGroup(ctx, p.Group, p.Unique, p.page())
			return pageReply(pg), err
		}),
	def("getUidCount", resultCoveredCount, "Number of distinct bound uids: exact, or estimated with unique_percent.",
		func(ctx context.Context, a api.API, p *uidCountParams) (reply, error) {
			c, err := a.GetUIDCount(ctx, p.UniquePercent)
			return covered(c.Value, c.Coverage), err
		}),
	def("getUidCountByGroup", resultCoveredCount, "Number of distinct uids among the members of the group, exact.",
		func(ctx context.Context, a api.API, p *groupParams) (reply, error) {
			c, err := a.GetUIDCountByGroup(ctx, p.Group)
			return covered(c.Value, c.Coverage), err
		}),
	def("getGroupList", resultPage, "Groups that have at least one member, one page at a time.",
		func(ctx context.Context, a api.API, p *uidListParams) (reply, error) {
			pg, err := a.GetGroupList(ctx, p.Unique, p.page())
			return pageReply(pg), err
		}),
	def("getClientSessionsByGroup", resultCoveredSessions, "The session of every member of the group, by client id.",
		func(ctx context.Context, a api.API, p *groupParams) (reply, error) {
			cs, err := a.GetClientSessionsByGroup(ctx, p.Group)
			out := make(map[string]api.Session, len(cs.Sessions))
			for c, s := range cs.Sessions {
				out[c] = nonNilSession(s)
			}
			return covered(out, cs.Coverage), err
		}),
	closeClientMethod(),
	closeUIDMethod(),
	sendToClientsMethod(),
	taskMethod(),
	taskWaitMethod(),
	isUIDsOnlineMethod(),
	getClientCountByGroupsMethod(),
	getClientListByUIDsMethod(),
	getAllClientSessionsMethod(),
	getAllGroupClientIDCountMethod(),
	getAllGroupUIDCountMethod(),
	getAllGroupClientIDListMethod(),
	def("bindUid", resultNull, "Bind the connection to the uid (one uid per connection, the last bind wins).",
		func(ctx context.Context, a api.API, p *bindParams) (reply, error) {
			return reply{}, a.BindUID(ctx, p.Client, p.UID)
		}),
	def("unbindUid", resultNull, "Unbind the connection from its uid.",
		func(ctx context.Context, a api.API, p *clientParams) (reply, error) {
			return reply{}, a.UnbindUID(ctx, p.Client)
		}).alias("unBindUid"),
	def("joinGroup", resultNull, "Add the connection to the group.",
		func(ctx context.Context, a api.API, p *clientGroupParams) (reply, error) {
			return reply{}, a.JoinGroup(ctx, p.Client, p.Group)
		}),
	def("leaveGroup", resultNull, "Remove the connection from the group.",
		func(ctx context.Context, a api.API, p *clientGroupParams) (reply, error) {
			return reply{}, a.LeaveGroup(ctx, p.Client, p.Group)
		}),
	def("unGroup", resultNull, "Dissolve the group everywhere; its members stay connected.",
		func(ctx context.Context, a api.API, p *groupParams) (reply, error) {
			return reply{}, a.UnGroup(ctx, p.Group)
		}),
	def("setSession", resultNull, "Replace the connection's session.",
		func(ctx context.Context, a api.API, p *sessionParams) (reply, error) {
			return reply{}, a.SetSession(ctx, p.Client, p.Session)
		}),
	def("updateSession", resultNull, "Merge keys into the connection's session (shallow).",
		func(ctx context.Context, a api.API, p *sessionParams) (reply, error) {
			return reply{}, a.UpdateSession(ctx, p.Client, p.Session)
		}),
	def("deleteSession", resultNull, "Clear the connection's session.",
		func(ctx context.Context, a api.API, p *clientParams) (reply, error) {
			return reply{}, a.DeleteSession(ctx, p.Client)
		}),
	def("getSession", resultSession, "The connection's session.",
		func(ctx context.Context, a api.API, p *clientParams) (reply, error) {
			s, err := a.GetSession(ctx, p.Client)
			return reply{result: nonNilSession(s)}, err
		}),
	defUnscoped("getStats", resultCoveredStats, "Every gateway's process and traffic counters (pid, uptime, memory, bus state, "+
		"connections, accepted and closed, uids, groups, messages and bytes in and out, events sent, acked and in flight, "+
		"dispatch mode), the workers they know (idle or busy), the user processes of their nodes, and the totals. "+
		"Counters only grow: poll it and take differences for rates (the web console does, once a second).",
		func(ctx context.Context, a api.API, _ *noParams) (reply, error) {
			sa, ok := a.(StatsAPI)
			if !ok {
				return reply{}, newError(http.StatusNotFound, CodeUnknownMethod, "getStats is not served by this API")
			}
			st, err := sa.GetStats(ctx)
			return covered(st, st.Coverage), err
		}),
	def("protect", resultNull, "Exempt the connection from pings and the idle timeout, or end the exemption.",
		func(ctx context.Context, a api.API, p *protectParams) (reply, error) {
			return reply{}, a.Protect(ctx, p.Client, p.Protect)
		}),
	def("pauseRecv", resultNull, "Stop reading the connection: what it sends waits in its socket (TCP flow control holds the client back), "+
		"and pings and the idle timeout leave it alone, until resumeRecv. Not for udp connections (400).",
		func(ctx context.Context, a api.API, p *clientParams) (reply, error) {
			return reply{}, a.PauseRecv(ctx, p.Client)
		}),
	def("resumeRecv", resultNull, "Read the connection again after pauseRecv, from where it stopped: nothing is lost.",
		func(ctx context.Context, a api.API, p *clientParams) (reply, error) {
			return reply{}, a.ResumeRecv(ctx, p.Client)
		}),
	def("confirm", resultNull, "Start reading a connection of a delay_receive listener (unconfirmed ones close at confirm_timeout); "+
		"does nothing to other connections.",
		func(ctx context.Context, a api.API, p *clientParams) (reply, error) {
			return reply{}, a.Confirm(ctx, p.Client)
		}),
	def("setBinary", resultNull, "Make every later send to the connection a WebSocket binary frame, or end that.",
		func(ctx context.Context, a api.API, p *binaryParams) (reply, error) {
			return reply{}, a.SetBinary(ctx, p.Client, p.Binary)
		}),
}

// StatsAPI is the optional extra of an api.API that the getStats method
// needs; *api.Client has it. With an API without it, getStats answers 404
// unknown_method.
type StatsAPI interface {
	GetStats(ctx context.Context) (api.Stats, error)
}

var _ StatsAPI = (*api.Client)(nil)

// combine joins an optional single name and a list, dropping repeats and
// keeping the first-seen order.
func combine(one *string, many []string) []string {
	out := make([]string, 0, len(many)+1)
	seen := make(map[string]bool, len(many)+1)
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	if one != nil {
		add(*one)
	}
	for _, s := range many {
		add(s)
	}
	return out
}

func covered(v any, c api.Coverage) reply {
	return reply{result: v, coverage: &c}
}

// pageJSON is the JSON of a page; Items and Missing are never null.
type pageJSON struct {
	Items      []string `json:"items"`
	NextCursor string   `json:"next_cursor"`
	Partial    bool     `json:"partial"`
	Missing    []string `json:"missing"`
}

func pageReply(p api.Page) reply {
	return reply{result: pageJSON{
		Items:      nonNil(p.Items),
		NextCursor: p.NextCursor,
		Partial:    p.Partial,
		Missing:    nonNil(p.Missing),
	}}
}

// clientInfoResult keeps exactly the keys selected by f, each present even
// when empty: "" for an unbound uid, {} and [] for no session or groups.
func clientInfoResult(info api.ClientInfo, f api.Fields) map[string]any {
	out := make(map[string]any, 6)
	if f&api.FieldRemoteIP != 0 {
		out["remote_ip"] = info.RemoteIP
	}
	if f&api.FieldRemotePort != 0 {
		out["remote_port"] = info.RemotePort
	}
	if f&api.FieldUID != 0 {
		uid := ""
		if info.UID != nil {
			uid = *info.UID
		}
		out["uid"] = uid
	}
	if f&api.FieldSession != 0 {
		out["session"] = nonNilSession(info.Session)
	}
	if f&api.FieldGroups != 0 {
		out["groups"] = nonNil(info.Groups)
	}
	if f&api.FieldSystem != 0 {
		out["system"] = info.System
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilSession(s api.Session) api.Session {
	if s == nil {
		return api.Session{}
	}
	return s
}
