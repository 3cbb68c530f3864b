package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/gatework/gatework/bus"
)

// Batch is the JSON body POSTed for one bus.EventBatch: the events of one
// client, in order, with the client's state as of the batch (the same
// fields as the bus events, docs/bus-protocol.md).
type Batch struct {
	Version  uint32  `json:"version"`
	Gateway  string  `json:"gateway"`
	Delivery uint64  `json:"delivery"`
	Attempt  uint32  `json:"attempt"`
	Client   string  `json:"client"`
	State    State   `json:"state"`
	Events   []Event `json:"events"`
}

// State is a client's state in a Batch. Session is the client's session
// object, or null when it has none.
type State struct {
	RemoteIP         string          `json:"remote_ip"`
	RemotePort       uint32          `json:"remote_port"`
	UID              string          `json:"uid"`
	Groups           []string        `json:"groups"`
	Session          json.RawMessage `json:"session"`
	Listener         string          `json:"listener"`
	Protocol         string          `json:"protocol"`
	ConnectedUnixMs  int64           `json:"connected_unix_ms"`
	LastActiveUnixMs int64           `json:"last_active_unix_ms"`
	BytesIn          uint64          `json:"bytes_in"`
	BytesOut         uint64          `json:"bytes_out"`
	MessagesIn       uint64          `json:"messages_in"`
	MessagesOut      uint64          `json:"messages_out"`
	Gateway          string          `json:"gateway"`
	Protected        bool            `json:"protected"`
}

// Event is one event of a Batch. Type is "connect", "websocket_connect",
// "message", "decode_error" or "close". A message (or decode_error) carries its bytes in Data when it is a
// text message that is valid UTF-8, else (binary, or bytes that are not
// UTF-8) in DataBase64 (standard base64, padded); exactly one of the two
// is present for a message, also an empty one.
type Event struct {
	Type        string   `json:"type"`
	TimeUnixMs  int64    `json:"time_unix_ms"`
	Data        *string  `json:"data,omitempty"`
	DataBase64  *string  `json:"data_base64,omitempty"`
	Binary      bool     `json:"binary,omitempty"`
	Request     *Request `json:"request,omitempty"`
	CloseReason string   `json:"close_reason,omitempty"`
	// BeforeUpgrade marks a "websocket_connect" whose 101 the gateway
	// holds for the answer (a listener with upgrade_hook): a "reject"
	// answers the HTTP status code (400-599) with reason as the body.
	BeforeUpgrade bool `json:"before_upgrade,omitempty"`
	// Value is, for a "message" on a listener whose codec is neither raw
	// nor json, the decoded message in its neutral JSON form (Data or
	// DataBase64 still hold the bytes as received); absent otherwise.
	Value json.RawMessage `json:"value,omitempty"`
	// Error is, for a "decode_error" (a message the listener's codec
	// could not decode, its decode_error policy being "event"), the
	// codec's error; the message is in Data or DataBase64 as for a
	// "message".
	Error string `json:"error,omitempty"`
}

// Request is the WebSocket upgrade request of a "websocket_connect" event.
// Headers are in the order received, Cookie included. Bytes that are not
// UTF-8 in a path, query or header become U+FFFD.
type Request struct {
	Method  string   `json:"method"`
	Path    string   `json:"path"`
	Query   string   `json:"query"`
	Host    string   `json:"host"`
	Headers []Header `json:"headers"`
}

// Header is one header line of a Request.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// newBatch converts b. The result aliases b's byte fields only through
// copies made by the JSON encoder.
func newBatch(b *bus.EventBatch) Batch {
	st := &b.State
	out := Batch{
		Version: b.Version, Gateway: b.Gateway, Delivery: b.Delivery, Attempt: b.Attempt, Client: b.Client,
		State: State{
			RemoteIP: st.RemoteIP, RemotePort: st.RemotePort, UID: st.UID, Groups: st.Groups,
			Listener: st.Listener, Protocol: st.Protocol, ConnectedUnixMs: st.ConnectedUnixMs,
			LastActiveUnixMs: st.LastActiveUnixMs, BytesIn: st.BytesIn, BytesOut: st.BytesOut,
			MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut, Gateway: st.Gateway, Protected: st.Protected,
		},
		Events: make([]Event, len(b.Events)),
	}
	if out.State.Groups == nil {
		out.State.Groups = []string{}
	}
	if len(st.Session) > 0 && json.Valid(st.Session) {
		out.State.Session = st.Session
	} else {
		out.State.Session = json.RawMessage("null")
	}
	for i := range b.Events {
		ev := &b.Events[i]
		e := Event{Type: ev.Type.String(), TimeUnixMs: ev.TimeUnixMs, CloseReason: ev.CloseReason, BeforeUpgrade: ev.BeforeUpgrade}
		if ev.Type == bus.EventMessage || ev.Type == bus.EventDecodeError {
			e.Binary = ev.Binary
			if !ev.Binary && utf8.Valid(ev.Data) {
				s := string(ev.Data)
				e.Data = &s
			} else {
				s := base64.StdEncoding.EncodeToString(ev.Data)
				e.DataBase64 = &s
			}
			if len(ev.Value) > 0 && json.Valid(ev.Value) {
				e.Value = ev.Value
			}
			e.Error = ev.Error
		}
		if r := ev.Request; r != nil {
			req := &Request{Method: r.Method, Path: r.Path, Query: r.Query, Host: r.Host, Headers: make([]Header, len(r.Headers))}
			for k, h := range r.Headers {
				req.Headers[k] = Header{Name: h.Name, Value: h.Value}
			}
			e.Request = req
		}
		out.Events[i] = e
	}
	return out
}

// Answer is the JSON body of a backend's 2xx answer: the actions for the
// batch's client, applied in order (an empty body means none).
type Answer struct {
	Actions []Action `json:"actions"`
}

// Action is one action of an Answer. Type names it; the other fields are
// used as the type says:
//
//	send            data (text) or data_base64; binary
//	close           force; data or data_base64 = final message (optional)
//	bind            uid
//	unbind
//	join, leave     group
//	session_set     session (a JSON object)
//	session_update  session (a JSON object, shallow-merged)
//	session_delete
//	reject          code (HTTP-like status, close code 4000+code), reason
//	protect         on
type Action struct {
	Type       string          `json:"type"`
	Data       *string         `json:"data,omitempty"`
	DataBase64 *string         `json:"data_base64,omitempty"`
	Binary     bool            `json:"binary,omitempty"`
	Force      bool            `json:"force,omitempty"`
	UID        string          `json:"uid,omitempty"`
	Group      string          `json:"group,omitempty"`
	Session    json.RawMessage `json:"session,omitempty"`
	Code       uint32          `json:"code,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	On         bool            `json:"on,omitempty"`
}

// errBadAnswer wraps every reason why an answer is refused.
var errBadAnswer = errors.New("webhook: bad answer")

// parseAnswer decodes body into bus actions. An empty (or all white space)
// body means no actions. Any error wraps errBadAnswer, and then no action
// is returned: an answer is applied whole or not at all.
func parseAnswer(body []byte) ([]bus.Action, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var a Answer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %w", errBadAnswer, err)
	}
	out := make([]bus.Action, 0, len(a.Actions))
	for i := range a.Actions {
		act, err := a.Actions[i].toBus()
		if err != nil {
			return nil, fmt.Errorf("%w: action %d: %w", errBadAnswer, i, err)
		}
		out = append(out, act)
	}
	return out, nil
}

// toBus converts a to a bus action, checking its fields.
func (a *Action) toBus() (bus.Action, error) {
	data := func(required bool) ([]byte, error) {
		switch {
		case a.Data != nil && a.DataBase64 != nil:
			return nil, errors.New("both data and data_base64")
		case a.Data != nil:
			return []byte(*a.Data), nil
		case a.DataBase64 != nil:
			b, err := base64.StdEncoding.DecodeString(*a.DataBase64)
			if err != nil {
				return nil, fmt.Errorf("data_base64: %w", err)
			}
			return b, nil
		case required:
			return nil, errors.New("no data")
		}
		return nil, nil
	}
	session := func() ([]byte, error) {
		s := bytes.TrimSpace(a.Session)
		if len(s) == 0 || s[0] != '{' {
			return nil, errors.New("session is not a JSON object")
		}
		return s, nil
	}
	var err error
	out := bus.Action{}
	switch a.Type {
	case "send":
		out.Type, out.Flag = bus.ActionSend, a.Binary
		out.Data, err = data(true)
	case "close":
		out.Type, out.Flag = bus.ActionClose, a.Force
		out.Data, err = data(false)
	case "bind":
		out.Type, out.Arg = bus.ActionBindUID, a.UID
		if a.UID == "" {
			err = errors.New("bind without uid")
		}
	case "unbind":
		out.Type = bus.ActionUnbindUID
	case "join", "leave":
		out.Type, out.Arg = bus.ActionJoinGroup, a.Group
		if a.Type == "leave" {
			out.Type = bus.ActionLeaveGroup
		}
		if a.Group == "" {
			err = fmt.Errorf("%s without group", a.Type)
		}
	case "session_set":
		out.Type = bus.ActionSetSession
		out.Data, err = session()
	case "session_update":
		out.Type = bus.ActionUpdateSession
		out.Data, err = session()
	case "session_delete":
		out.Type = bus.ActionDeleteSession
	case "reject":
		out.Type, out.Code, out.Arg = bus.ActionReject, a.Code, a.Reason
		if a.Code < 100 || a.Code > 999 {
			err = fmt.Errorf("reject code %d not in 100-999", a.Code)
		}
	case "protect":
		out.Type, out.Flag = bus.ActionProtect, a.On
	case "pause_recv":
		out.Type = bus.ActionPauseRecv
	case "resume_recv":
		out.Type = bus.ActionResumeRecv
	case "confirm":
		out.Type = bus.ActionConfirm
	case "set_binary":
		out.Type, out.Flag = bus.ActionSetBinary, a.On
	default:
		err = fmt.Errorf("unknown action type %q", a.Type)
	}
	return out, err
}
