package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/codec"
)

// Context is one event of one client, as handed to a handler.
//
// A Context is valid only during the handler call it was passed to, and only
// on that call's goroutine: it is not safe for concurrent use, and must not
// be retained or used after the handler returns (use Context.API with
// ClientID for anything later or on another goroutine).
//
// Mutations of the client (Send, Close, BindUID, JoinGroup, SetSession,
// Reject, …) are queued and sent to the gateway in the batch's final Ack
// (or before an API call: see API); the gateway applies them in order
// before the client's next event. They
// are also applied at once to the Context's view: UID, Groups and Session
// reflect them in the same handler, and the next event of the same batch
// starts from the view the previous handler left. None of them blocks.
type Context struct {
	w  *Worker
	j  *job
	ev *bus.Event
}

// ClientID returns the id of the client the event belongs to.
func (c *Context) ClientID() string { return c.j.batch.Client }

// Event returns the type of the event being handled.
func (c *Context) Event() bus.EventType { return c.ev.Type }

// Attempt returns 1 the first time the event's batch is delivered, and more
// when a gateway redelivered it because a worker did not finish it in time
// (the event may have been handled, fully or partly, before).
func (c *Context) Attempt() int {
	if c.j.batch.Attempt < 1 {
		return 1
	}
	return int(c.j.batch.Attempt)
}

// Binary reports, for a message, whether it arrived as a WebSocket binary
// frame.
func (c *Context) Binary() bool { return c.ev.Binary }

// Time returns when the gateway saw the event (zero if it did not say).
func (c *Context) Time() time.Time { return unixMilli(c.ev.TimeUnixMs) }

// CloseReason returns, in OnClose, why the connection closed; otherwise "".
func (c *Context) CloseReason() string { return c.ev.CloseReason }

// UID returns the uid the client is bound to ("" when unbound), as the
// gateway knew it when the batch was sent, changed by this batch's
// BindUID/UnbindUID calls so far.
func (c *Context) UID() string { return c.j.uid }

// Groups returns the client's groups, sorted, as the gateway knew them when
// the batch was sent, changed by this batch's JoinGroup/LeaveGroup calls so
// far. The slice is the caller's.
func (c *Context) Groups() []string { return slices.Clone(c.j.groups) }

// InGroup reports whether Groups contains group, without allocating.
func (c *Context) InGroup(group string) bool {
	_, ok := slices.BinarySearch(c.j.groups, group)
	return ok
}

// Session returns the client's session as of the event: the JSON object the
// gateway sent with the batch, changed by this batch's SetSession,
// UpdateSession and DeleteSession calls so far. It is decoded on every call
// (numbers as float64, objects as map[string]any), so the map is the
// caller's: changing it changes nothing on the gateway — use SetSession or
// UpdateSession for that. A client without a session gets an empty map.
func (c *Context) Session() api.Session {
	s := api.Session{}
	if len(c.j.session) > 0 {
		if err := json.Unmarshal(c.j.session, &s); err != nil {
			c.w.log.Warn("session is not a JSON object; using an empty one", "client", c.ClientID(), "err", err)
			s = api.Session{}
		}
	}
	for _, p := range c.j.patches {
		// Unmarshal into a map keeps the keys it does not set: a shallow
		// merge, as the gateway does it.
		if err := json.Unmarshal(p, &s); err != nil {
			// Cannot happen: p was made by json.Marshal of an api.Session.
			c.w.log.Error("session patch did not decode", "client", c.ClientID(), "err", err)
		}
	}
	if s == nil { // the gateway's session was JSON null
		s = api.Session{}
	}
	return s
}

// ClientInfo is what the gateway knew of a client when it sent the batch.
type ClientInfo struct {
	RemoteIP    string
	RemotePort  int
	Listener    string    // name of the listener the client connected to
	Protocol    string    // "ws", "tcp" or "udp"
	Gateway     string    // id of the gateway that holds the connection
	ConnectedAt time.Time // zero if the gateway did not say
	LastActive  time.Time // zero if the gateway did not say
	BytesIn     uint64
	BytesOut    uint64
	MessagesIn  uint64
	MessagesOut uint64
	Protected   bool // exempt from pings and the idle timeout (Protect)
}

// Info returns the client's basic information.
func (c *Context) Info() ClientInfo {
	st := &c.j.batch.State
	gw := st.Gateway
	if gw == "" {
		gw = c.j.batch.Gateway
	}
	return ClientInfo{
		RemoteIP:    st.RemoteIP,
		RemotePort:  int(st.RemotePort),
		Listener:    st.Listener,
		Protocol:    st.Protocol,
		Gateway:     gw,
		ConnectedAt: unixMilli(st.ConnectedUnixMs),
		LastActive:  unixMilli(st.LastActiveUnixMs),
		BytesIn:     st.BytesIn,
		BytesOut:    st.BytesOut,
		MessagesIn:  st.MessagesIn,
		MessagesOut: st.MessagesOut,
		Protected:   st.Protected,
	}
}

// Send queues msg for the client; the gateway sends it as a text frame if it
// is valid UTF-8 and the connection has not opted for binary, otherwise as
// binary (TCP: framed by the listener's framing). Send copies msg: the
// caller may reuse it at once.
func (c *Context) Send(msg []byte) { c.send(msg, false) }

// SendBinary is Send as a WebSocket binary frame whatever msg holds.
func (c *Context) SendBinary(msg []byte) { c.send(msg, true) }

func (c *Context) send(msg []byte, binary bool) {
	c.add(bus.Action{Type: bus.ActionSend, Data: bytes.Clone(msg), Flag: binary})
}

// Close queues a graceful close of the client: the messages queued before
// it are flushed first.
func (c *Context) Close() { c.add(bus.Action{Type: bus.ActionClose}) }

// CloseForce queues an immediate close of the client: unsent data is
// dropped.
func (c *Context) CloseForce() { c.add(bus.Action{Type: bus.ActionClose, Flag: true}) }

// CloseWith queues a graceful close of the client after a final message:
// the messages queued before it, then msg (as Send sends it), then the
// close. An empty msg is Close. CloseWith copies msg.
func (c *Context) CloseWith(msg []byte) {
	c.add(bus.Action{Type: bus.ActionClose, Data: bytes.Clone(msg)})
}

// BindUID binds the client to uid (one uid per connection, the last bind
// wins). An empty uid is UnbindUID.
func (c *Context) BindUID(uid string) {
	if uid == "" {
		c.UnbindUID()
		return
	}
	c.j.uid = uid
	c.add(bus.Action{Type: bus.ActionBindUID, Arg: uid})
}

// UnbindUID unbinds the client from its uid.
func (c *Context) UnbindUID() {
	c.j.uid = ""
	c.add(bus.Action{Type: bus.ActionUnbindUID})
}

// JoinGroup adds the client to group. An empty group is ignored.
func (c *Context) JoinGroup(group string) {
	if group == "" {
		return
	}
	if i, ok := slices.BinarySearch(c.j.groups, group); !ok {
		c.j.groups = slices.Insert(c.j.groups, i, group)
	}
	c.add(bus.Action{Type: bus.ActionJoinGroup, Arg: group})
}

// LeaveGroup removes the client from group. An empty group is ignored.
func (c *Context) LeaveGroup(group string) {
	if group == "" {
		return
	}
	if i, ok := slices.BinarySearch(c.j.groups, group); ok {
		c.j.groups = slices.Delete(c.j.groups, i, i+1)
	}
	c.add(bus.Action{Type: bus.ActionLeaveGroup, Arg: group})
}

// SetSession replaces the client's session with s (nil: an empty one). It
// returns an error, and changes nothing, if s does not encode to JSON. s is
// encoded at once: changing it after the call changes nothing.
func (c *Context) SetSession(s api.Session) error {
	data := []byte("{}")
	if s != nil {
		var err error
		if data, err = json.Marshal(s); err != nil {
			return fmt.Errorf("worker: set session: %w", err)
		}
	}
	c.j.session = data
	c.j.patches = c.j.patches[:0]
	c.add(bus.Action{Type: bus.ActionSetSession, Data: data})
	return nil
}

// UpdateSession merges s into the client's session: its keys replace the
// session's, the other keys stay (a shallow merge). It returns an error,
// and changes nothing, if s does not encode to JSON; an empty s does
// nothing. s is encoded at once: changing it after the call changes nothing.
func (c *Context) UpdateSession(s api.Session) error {
	if len(s) == 0 {
		return nil
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("worker: update session: %w", err)
	}
	c.j.patches = append(c.j.patches, data)
	c.add(bus.Action{Type: bus.ActionUpdateSession, Data: data})
	return nil
}

// DeleteSession clears the client's session.
func (c *Context) DeleteSession() {
	c.j.session = nil
	c.j.patches = c.j.patches[:0]
	c.add(bus.Action{Type: bus.ActionDeleteSession})
}

// Protect exempts the client from its listener's pings and idle timeout
// (on), or ends the exemption (off; the idle clock then starts over). Like
// the other actions it is applied when the handler returns, before the
// client's next event.
func (c *Context) Protect(on bool) {
	c.add(bus.Action{Type: bus.ActionProtect, Flag: on})
}

// PauseRecv stops reading the client: what it sends waits in its socket
// (TCP flow control holds it back), and pings and the idle timeout leave
// it alone, until ResumeRecv, which reads on from where it stopped,
// nothing lost. The messages already delivered to the worker are still
// handled. Applied when the handler returns, like the other actions; a
// UDP client cannot pause (the gateway logs and drops the action).
func (c *Context) PauseRecv() { c.add(bus.Action{Type: bus.ActionPauseRecv}) }

// ResumeRecv reads the client again after PauseRecv.
func (c *Context) ResumeRecv() { c.add(bus.Action{Type: bus.ActionResumeRecv}) }

// Confirm starts reading a client of a delay_receive listener, typically
// from OnConnect once it is accepted; an unconfirmed client is closed
// with reason confirm_timeout. On any other client it does nothing.
func (c *Context) Confirm() { c.add(bus.Action{Type: bus.ActionConfirm}) }

// SetBinary makes every later message sent to the client (by any handler
// or API call) a WebSocket binary frame, whatever it holds (on), or ends
// that (off: text when valid UTF-8, as the listener says). No effect on
// TCP and UDP clients.
func (c *Context) SetBinary(on bool) { c.add(bus.Action{Type: bus.ActionSetBinary, Flag: on}) }

// Reject refuses the client. It is meant for OnConnect and
// OnWebSocketConnect, with an HTTP status such as 401 or 403.
//
// Before the upgrade (BeforeUpgrade: a listener with upgrade_hook), the
// gateway answers the upgrade request with that HTTP status and reason as
// the response body, and the client never connects; the status must be
// 400–599, else Reject returns an error and queues nothing (the upgrade
// is accepted unless the handler rejects it properly).
//
// Otherwise the gateway closes the client, a WebSocket with close code
// 4000+status and reason; a status outside 100–999 becomes 403, and the
// error is nil.
//
// Later events of the same batch, if any, are still handled.
func (c *Context) Reject(status int, reason string) error {
	if c.BeforeUpgrade() {
		if status < 400 || status > 599 {
			return fmt.Errorf("worker: reject before the upgrade: HTTP status %d not in 400-599", status)
		}
	} else if status < 100 || status > 999 {
		status = 403
	}
	c.add(bus.Action{Type: bus.ActionReject, Code: uint32(status), Arg: reason})
	return nil
}

// BeforeUpgrade reports whether the event is an OnWebSocketConnect whose
// 101 the gateway holds until the handler returns (a listener with
// upgrade_hook): Reject then answers an HTTP error, and the client's
// OnConnect comes only after, once accepted. Messages sent now reach the
// client right after the 101.
func (c *Context) BeforeUpgrade() bool { return c.ev.BeforeUpgrade }

// API returns the cluster API, for anything beyond the current client: other
// clients, uids, groups, counts and lists. Its calls act at once. It is nil
// if the worker was made without one.
//
// While the batch is in hand, its calls are ordered with the actions
// queued through the Context: before a call, the actions queued so far
// are sent to the gateway and applied (one round trip, only when actions
// are waiting), and the actions queued after it reach the gateway after
// it. So c.Send(a); c.API().SendToClient(ctx, c.ClientID(), b); c.Send(c)
// delivers a, b, c in that order, and c.JoinGroup(g) before
// c.API().SendToGroup(ctx, []string{g}, m) includes the client. This
// holds when the API client and the worker share one NATS connection
// (api.New(nc, …) with the worker's nc, as gatework's worker processes
// and node do): a gateway executes what one connection publishes in
// order. The value may be kept and used from any goroutine, also after
// the handler returned; then it is the worker's API.
func (c *Context) API() api.API {
	if c.w.api == nil {
		return nil
	}
	if c.j.ord == nil {
		c.j.ord = &orderedAPI{inner: c.w.api, w: c.w, j: c.j}
	}
	return c.j.ord
}

// Context returns a context for the handler's blocking calls; it is
// cancelled when the worker is stopped and gives up on its handlers (Stop's
// ctx expired).
func (c *Context) Context() context.Context { return c.w.ctx }

func (c *Context) add(a bus.Action) {
	if o := c.j.ord; o != nil { // the API may flush from another goroutine
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	c.j.actions = append(c.j.actions, a)
}

// Request is the HTTP request that upgraded a client to WebSocket. It
// belongs to the handler it is passed to, which may retain it.
type Request struct {
	Method   string
	Path     string
	RawQuery string     // the query, without '?'
	Query    url.Values // RawQuery parsed; malformed pairs are left out
	Header   http.Header
	Host     string
}

// Cookies parses and returns the cookies sent with the request.
func (r *Request) Cookies() []*http.Cookie {
	return (&http.Request{Header: r.Header}).Cookies()
}

// newRequest converts the bus form of an upgrade request; nil gives an
// empty Request.
func newRequest(br *bus.HTTPRequest) *Request {
	r := &Request{Query: url.Values{}, Header: http.Header{}}
	if br == nil {
		return r
	}
	r.Method, r.Path, r.RawQuery, r.Host = br.Method, br.Path, br.Query, br.Host
	r.Query, _ = url.ParseQuery(br.Query) // keeps the pairs that parse
	for _, h := range br.Headers {
		r.Header.Add(h.Name, h.Value)
	}
	return r
}

func unixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// SendValue queues the structured value v for the client: it travels as
// JSON (encoding/json) and the gateway encodes it with the codec of the
// client's listener (a raw or json listener sends the JSON text). It
// returns an error, and queues nothing, if v does not encode to JSON.
func (c *Context) SendValue(v any) error {
	data, err := codec.ToNeutral(v)
	if err != nil {
		return fmt.Errorf("worker: send value: %w", err)
	}
	c.add(bus.Action{Type: bus.ActionSendValue, Data: data})
	return nil
}

// Codec returns the codec of the client's listener: "" (raw), "json" or
// a name registered on the gateway.
func (c *Context) Codec() string { return c.j.batch.State.Codec }

// ErrNoCodec is returned by Decode for a message of a listener without a
// codec (raw): its messages are bytes, not values.
var ErrNoCodec = errors.New("worker: the listener has no codec (raw)")

// Decode decodes the message being handled (OnMessage) into v, as
// encoding/json decodes into v, from the value the listener's codec
// decoded on the gateway: on a json listener the message itself, with
// another codec the value the gateway decoded (carried as JSON). It
// returns ErrNoCodec on a raw listener, and an error for an event that is
// not a message.
func (c *Context) Decode(v any) error {
	if c.ev.Type != bus.EventMessage {
		return fmt.Errorf("worker: decode: a %s event has no message", c.ev.Type)
	}
	src := c.ev.Value
	if len(src) == 0 {
		if c.Codec() != codec.JSON {
			return ErrNoCodec
		}
		src = c.ev.Data
	}
	if err := json.Unmarshal(src, v); err != nil {
		return fmt.Errorf("worker: decode: %w", err)
	}
	return nil
}

// DecodeError is a message that the listener's codec could not decode
// (Handlers.OnDecodeError).
type DecodeError struct {
	Listener string // the client's listener
	Codec    string // its codec
	Reason   string // the codec's error, as the gateway reported it
}

// Error describes the failure.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("worker: listener %s: codec %s: %s", e.Listener, e.Codec, e.Reason)
}
