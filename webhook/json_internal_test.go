package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gatework/gatework/bus"
)

func TestParseAnswer(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   []bus.Action
		errBad bool
	}{
		{"empty", "", nil, false},
		{"white space", " \n", nil, false},
		{"no actions", `{}`, []bus.Action{}, false},
		{"every action", `{"actions":[
			{"type":"send","data":"hi"},{"type":"send","data_base64":"AAH/","binary":true},
			{"type":"close","force":true,"data":"bye"},{"type":"bind","uid":"u"},{"type":"unbind"},
			{"type":"join","group":"g"},{"type":"leave","group":"g"},
			{"type":"session_set","session":{"a":1}},{"type":"session_update","session":{"b":2}},
			{"type":"session_delete"},{"type":"reject","code":403,"reason":"no"},{"type":"protect","on":true},
			{"type":"pause_recv"},{"type":"resume_recv"},{"type":"confirm"},{"type":"set_binary","on":true}]}`,
			[]bus.Action{
				{Type: bus.ActionSend, Data: []byte("hi")}, {Type: bus.ActionSend, Data: []byte{0, 1, 0xff}, Flag: true},
				{Type: bus.ActionClose, Flag: true, Data: []byte("bye")}, {Type: bus.ActionBindUID, Arg: "u"},
				{Type: bus.ActionUnbindUID}, {Type: bus.ActionJoinGroup, Arg: "g"}, {Type: bus.ActionLeaveGroup, Arg: "g"},
				{Type: bus.ActionSetSession, Data: []byte(`{"a":1}`)}, {Type: bus.ActionUpdateSession, Data: []byte(`{"b":2}`)},
				{Type: bus.ActionDeleteSession}, {Type: bus.ActionReject, Code: 403, Arg: "no"}, {Type: bus.ActionProtect, Flag: true},
				{Type: bus.ActionPauseRecv}, {Type: bus.ActionResumeRecv}, {Type: bus.ActionConfirm},
				{Type: bus.ActionSetBinary, Flag: true},
			}, false},
		{"empty send", `{"actions":[{"type":"send","data":""}]}`, []bus.Action{{Type: bus.ActionSend, Data: []byte{}}}, false},
		{"not JSON", `<html>`, nil, true},
		{"unknown type", `{"actions":[{"type":"send","data":"x"},{"type":"kick"}]}`, nil, true},
		{"send without data", `{"actions":[{"type":"send"}]}`, nil, true},
		{"both data fields", `{"actions":[{"type":"send","data":"x","data_base64":"eA=="}]}`, nil, true},
		{"bad base64", `{"actions":[{"type":"send","data_base64":"!!"}]}`, nil, true},
		{"bind without uid", `{"actions":[{"type":"bind"}]}`, nil, true},
		{"join without group", `{"actions":[{"type":"join"}]}`, nil, true},
		{"session array", `{"actions":[{"type":"session_set","session":[1]}]}`, nil, true},
		{"session missing", `{"actions":[{"type":"session_update"}]}`, nil, true},
		{"reject code", `{"actions":[{"type":"reject","code":42}]}`, nil, true},
		{"actions not a list", `{"actions":{}}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAnswer([]byte(tt.body))
			if tt.errBad {
				if !errors.Is(err, errBadAnswer) || got != nil {
					t.Fatalf("got %v, %v; want no actions and errBadAnswer", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(tt.want)
			if string(a) != string(b) {
				t.Fatalf("got %s\nwant %s", a, b)
			}
		})
	}
}

// FuzzParseAnswer: any answer body either fails with errBadAnswer and no
// actions, or gives actions of known types that encode into an Ack.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{"", "{}", `{"actions":[{"type":"send","data":"x"}]}`,
		`{"actions":[{"type":"session_set","session":{"a":[1,{"b":null}]}}]}`,
		`{"actions":[{"type":"close","data_base64":"AA=="},{"type":"reject","code":403}]}`, `[`, `{"actions":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		acts, err := parseAnswer(body)
		if err != nil {
			if !errors.Is(err, errBadAnswer) || acts != nil {
				t.Fatalf("error %v with %d actions", err, len(acts))
			}
			return
		}
		for _, a := range acts {
			if a.Type <= bus.ActionUnknown || (a.Type > bus.ActionProtect && (a.Type < bus.ActionPauseRecv || a.Type > bus.ActionSetBinary)) {
				t.Fatalf("action type %d", a.Type)
			}
			if (a.Type == bus.ActionSetSession || a.Type == bus.ActionUpdateSession) && !json.Valid(a.Data) {
				t.Fatalf("session %q is not JSON", a.Data)
			}
		}
		var ack bus.Ack
		if err := bus.DecodeAck(bus.AppendAck(nil, &bus.Ack{Delivery: 1, Actions: acts}), &ack); err != nil {
			t.Fatalf("ack round trip: %v", err)
		}
	})
}

// TestBeforeUpgradeJSON: a websocket_connect held before the upgrade
// carries "before_upgrade":true; other events leave the field out.
func TestBeforeUpgradeJSON(t *testing.T) {
	for _, tc := range []struct {
		before bool
		want   string
	}{
		{true, `"before_upgrade":true`},
		{false, ""},
	} {
		b := newBatch(&bus.EventBatch{Client: "c", Events: []bus.Event{
			{Type: bus.EventWebSocketConnect, Request: &bus.HTTPRequest{Method: "GET"}, BeforeUpgrade: tc.before}}})
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		has := strings.Contains(string(out), `"before_upgrade"`)
		if tc.want != "" && !strings.Contains(string(out), tc.want) || tc.want == "" && has {
			t.Errorf("before_upgrade %v: %s", tc.before, out)
		}
	}
}

// TestValueAndDecodeErrorJSON: a message's decoded value (a listener with
// a codec) and a decode_error event (its data and the codec's error)
// reach the backend; before, both were dropped (the decode_error as a
// bare {"type":"decode_error"}).
func TestValueAndDecodeErrorJSON(t *testing.T) {
	b := newBatch(&bus.EventBatch{Client: "c", Events: []bus.Event{
		{Type: bus.EventMessage, Data: []byte{0x81, 0xa1, 'a', 1}, Binary: true, Value: []byte(`{"a":1}`)},
		{Type: bus.EventDecodeError, Data: []byte("not msgpack"), Error: "msgpack: bad"},
		{Type: bus.EventMessage, Data: []byte("plain")},
	}})
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		i    int
		key  string
		want any
	}{
		{0, "value", map[string]any{"a": float64(1)}},
		{0, "data_base64", "gaFhAQ=="},
		{1, "type", "decode_error"},
		{1, "data", "not msgpack"},
		{1, "error", "msgpack: bad"},
		{2, "value", nil},
		{2, "error", nil},
	}
	for _, tt := range tests {
		v, ok := got.Events[tt.i][tt.key]
		if tt.want == nil {
			if ok {
				t.Errorf("event %d: %s = %v, want it absent", tt.i, tt.key, v)
			}
			continue
		}
		if fmt.Sprint(v) != fmt.Sprint(tt.want) {
			t.Errorf("event %d: %s = %v, want %v (%s)", tt.i, tt.key, v, tt.want, out)
		}
	}
}
