package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/httpapi"
)

const testToken = "s3cret-token"

// newHandler builds a Handler over a fresh fakeAPI with testToken.
func newHandler(t testing.TB, cfg httpapi.Config) (*httpapi.Handler, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	h, err := httpapi.New(f, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h, f
}

// do serves one request in memory and returns the recorder.
func do(h http.Handler, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+testToken)
	for k, v := range header {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// jsonEqual compares two JSON texts as values.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body = %s, want %s", bytes.TrimSpace(got), want)
	}
}

// errorOf decodes an error answer.
func errorOf(t *testing.T, body []byte) (code, msg string) {
	t.Helper()
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("not an error body (%v): %s", err, body)
	}
	return e.Error.Code, e.Error.Message
}

type methodCase struct {
	path     string // method name
	body     string
	want     call
	wantBody string
}

const null = `{"result":null}`

const page = `{"result":{"items":["a","b"],"next_cursor":"b","partial":false,"missing":[]}}`

var allInfo = `{"result":{"remote_ip":"10.0.0.1","remote_port":4242,"uid":"u1","session":{"k":"v"},"groups":["g1"],
	"system":{"listener":"ws","protocol":"websocket","gateway":"gw1","connected_at":"2025-01-02T03:04:05Z",
	"last_active":"2025-01-02T03:04:06Z","bytes_in":1,"bytes_out":2,"messages_in":3,"messages_out":4,"protected":false}}}`

// methodCases calls every method (and alias) with a valid body.
var methodCases = []methodCase{
	{"sendToClient", `{"client":"c1","message":"hi"}`, call{"SendToClient", []any{"c1", []byte("hi")}}, null},
	{"sendToUid", `{"uid":"u1","uids":["u2","u1","u3"],"message":"hi","without":["c9"]}`,
		call{"SendToUID", []any{[]string{"u1", "u2", "u3"}, []byte("hi"), []string{"c9"}}}, null},
	{"sendToUid", `{"uid":"u1","message":""}`, call{"SendToUID", []any{[]string{"u1"}, []byte{}, []string(nil)}}, null},
	{"sendToUid", `{"uids":["u2"],"message_base64":"AAE="}`, call{"SendToUID", []any{[]string{"u2"}, []byte{0, 1}, []string(nil)}}, null},
	{"sendToGroup", `{"groups":["g1","g2"],"group":"g0","message_base64":"AAE="}`,
		call{"SendToGroup", []any{[]string{"g0", "g1", "g2"}, []byte{0, 1}, []string(nil)}}, null},
	{"sendToGroup", `{"group":"g1","message":"x","without":[]}`, call{"SendToGroup", []any{[]string{"g1"}, []byte("x"), []string{}}}, null},
	{"sendToAll", `{"message":"x","without":["c1","c2"]}`, call{"SendToAll", []any{[]byte("x"), []string{"c1", "c2"}}}, null},
	{"isOnline", `{"client":"c1"}`, call{"IsOnline", []any{"c1"}}, `{"result":true}`},
	{"isUidOnline", `{"uid":"u1"}`, call{"IsUIDOnline", []any{"u1"}}, `{"result":true,"partial":true,"missing":["gw2"]}`},
	{"getClientCount", ``, call{"GetClientCount", nil}, `{"result":12,"partial":false,"missing":[]}`},
	{"getClientCount", ` {} `, call{"GetClientCount", nil}, `{"result":12,"partial":false,"missing":[]}`},
	{"getClientCountByGroup", `{"group":"g"}`, call{"GetClientCountByGroup", []any{"g"}}, `{"result":3,"partial":true,"missing":["gw2"]}`},
	{"getClientList", `{"cursor":"a","limit":2}`, call{"GetClientList", []any{api.PageRequest{Cursor: "a", Limit: 2}}}, page},
	{"getClientList", `{"cursor":null,"limit":null}`, call{"GetClientList", []any{api.PageRequest{}}}, page},
	{"getClientListByGroup", `{"group":"g"}`, call{"GetClientListByGroup", []any{"g", api.PageRequest{}}}, page},
	{"getClientListByUid", `{"uid":"u1","limit":20000}`, call{"GetClientListByUID", []any{"u1", api.PageRequest{Limit: 20000}}},
		`{"result":{"items":[],"next_cursor":"","partial":false,"missing":[]}}`},
	{"getClientInfo", `{"client":"c1"}`, call{"GetClientInfo", []any{"c1", api.FieldAll}}, allInfo},
	{"getClientInfo", `{"client":"c1","fields":5}`, call{"GetClientInfo", []any{"c1", api.Fields(5)}},
		`{"result":{"remote_ip":"10.0.0.1","uid":"u1"}}`},
	{"getClientInfo", `{"client":"c1","fields":26}`, call{"GetClientInfo", []any{"c1", api.Fields(26)}},
		`{"result":{"remote_port":4242,"session":{"k":"v"},"groups":["g1"]}}`},
	{"getClientInfo", `{"client":"c1","fields":0}`, call{"GetClientInfo", []any{"c1", api.FieldAll}}, `{"result":{"groups":["g1"],"remote_ip":"10.0.0.1","remote_port":4242,"session":{"k":"v"},"system":{"listener":"ws","protocol":"websocket","gateway":"gw1","connected_at":"2025-01-02T03:04:05Z","last_active":"2025-01-02T03:04:06Z","bytes_in":1,"bytes_out":2,"messages_in":3,"messages_out":4,"protected":false},"uid":"u1"}}`},
	{"getUidList", ``, call{"GetUIDList", []any{true, api.PageRequest{}}},
		`{"result":{"items":["a","b"],"next_cursor":"b","partial":true,"missing":["gw2"]}}`},
	{"getUidList", `{"unique":false,"limit":5,"cursor":"x"}`, call{"GetUIDList", []any{false, api.PageRequest{Cursor: "x", Limit: 5}}},
		`{"result":{"items":["a","b"],"next_cursor":"b","partial":true,"missing":["gw2"]}}`},
	{"getUidListByGroup", `{"group":"g","unique":false}`, call{"GetUIDListByGroup", []any{"g", false, api.PageRequest{}}}, page},
	{"getUidListByGroup", `{"group":"g"}`, call{"GetUIDListByGroup", []any{"g", true, api.PageRequest{}}}, page},
	{"getUidCount", ``, call{"GetUIDCount", []any{0.0}}, `{"result":7,"partial":false,"missing":[]}`},
	{"getUidCount", `{"unique_percent":0.5}`, call{"GetUIDCount", []any{0.5}}, `{"result":7,"partial":false,"missing":[]}`},
	{"getUidCount", `{"unique_percent":1}`, call{"GetUIDCount", []any{1.0}}, `{"result":7,"partial":false,"missing":[]}`},
	{"getUidCountByGroup", `{"group":"g"}`, call{"GetUIDCountByGroup", []any{"g"}}, `{"result":2,"partial":false,"missing":[]}`},
	{"getGroupList", `{"unique":true}`, call{"GetGroupList", []any{true, api.PageRequest{}}}, page},
	{"getClientSessionsByGroup", `{"group":"g"}`, call{"GetClientSessionsByGroup", []any{"g"}},
		`{"result":{"c1":{"k":"v"},"c2":{}},"partial":false,"missing":[]}`},
	{"closeClient", `{"client":"c1"}`, call{"CloseClient", []any{"c1", false}}, null},
	{"closeClient", `{"client":"c1","force":true}`, call{"CloseClient", []any{"c1", true}}, null},
	{"closeClient", `{"client":"c1","message":"bye"}`, call{"CloseClientWith", []any{"c1", false, "bye"}}, null},
	{"closeClient", `{"client":"c1","force":true,"message_base64":"AAE="}`, call{"CloseClientWith", []any{"c1", true, "\x00\x01"}}, null},
	{"closeUid", `{"uid":"u1"}`, call{"CloseUID", []any{"u1", false, ""}}, null},
	{"closeUid", `{"uid":"u1","force":true,"message":"gone"}`, call{"CloseUID", []any{"u1", true, "gone"}}, null},
	{"closeByFlag", `{"uid":"u1"}`, call{"CloseUID", []any{"u1", false, ""}}, null},
	{"sendToClients", `{"clients":["c1","c2"],"message":"hi"}`, call{"SendToClients", []any{[]string{"c1", "c2"}, []byte("hi")}}, null},
	{"task", `{"payload":"job"}`, call{"SubmitTask", []any{[]byte("job"), time.Duration(0)}}, `{"result":"t.1"}`},
	{"taskWait", `{"payload":"abc"}`, call{"TaskWait", []any{[]byte("abc"), 5 * time.Second}},
		`{"result":{"result":"cba","result_base64":"Y2Jh","error":null}}`},
	{"taskWait", `{"payload_base64":"AP8=","timeout_ms":250}`, call{"TaskWait", []any{[]byte{0, 0xff}, 250 * time.Millisecond}},
		`{"result":{"result":null,"result_base64":"/wA=","error":null}}`},
	{"taskWait", `{"payload":"fail"}`, call{"TaskWait", []any{[]byte("fail"), 5 * time.Second}},
		`{"result":{"result":null,"result_base64":"","error":"it failed"}}`},
	{"sendToClients", `{"clients":["c1","c2"],"data":{"a":[1,"x"]},"listener":"ws"}`, call{"SendValue", []any{api.Target{Clients: []string{"c1", "c2"}}, `{"a":[1,"x"]}`}}, null},
	{"sendToClient", `{"client":"c1","data":"text","listeners":["ws","tcp"]}`, call{"SendValue", []any{api.Target{Clients: []string{"c1"}}, `"text"`}}, null},
	{"sendToUid", `{"uids":["u1"],"data":7,"without":["c3"]}`, call{"SendValue", []any{api.Target{UIDs: []string{"u1"}, Without: []string{"c3"}}, `7`}}, null},
	{"sendToGroup", `{"group":"g","data":[true]}`, call{"SendValue", []any{api.Target{Groups: []string{"g"}}, `[true]`}}, null},
	{"sendToAll", `{"data":{"k":null},"without":["c1"]}`, call{"SendValue", []any{api.Target{All: true, Without: []string{"c1"}}, `{"k":null}`}}, null},
	{"getClientCount", `{"listener":"ws","listeners":["tcp","ws"]}`, call{"GetClientCount", nil}, `{"result":12,"partial":false,"missing":[]}`},
	{"getAllClientSessions", `{"limit":2}`, call{"GetAllClientSessions", []any{api.PageRequest{Limit: 2}}},
		`{"result":{"sessions":{"c1":{"k":"v"},"c2":{}},"next_cursor":"c2","partial":true,"missing":["gw2"]}}`},
	{"getAllGroupClientIdCount", ``, call{"GetAllGroupClientIDCount", nil}, `{"result":{"counts":{"g1":2},"truncated":false},"partial":false,"missing":[]}`},
	{"getAllGroupUidCount", `{"listener":"ws"}`, call{"GetAllGroupUIDCount", nil}, `{"result":{"counts":{"g1":1},"truncated":true},"partial":false,"missing":[]}`},
	{"getAllGroupClientIdList", `{"cursor":"g0"}`, call{"GetAllGroupClientIDList", []any{api.PageRequest{Cursor: "g0"}}},
		`{"result":{"groups":{"g1":["c1","c2"]},"next_cursor":"","partial":false,"missing":[]}}`},
	{"isUidsOnline", `{"uids":["u1","u2"]}`, call{"IsUIDsOnline", []any{[]string{"u1", "u2"}}}, `{"result":{"u1":true,"u2":false},"partial":false,"missing":[]}`},
	{"getClientCountByGroups", `{"groups":["g0","g1"]}`, call{"GetClientCountByGroups", []any{[]string{"g0", "g1"}}}, `{"result":{"g0":0,"g1":1},"partial":false,"missing":[]}`},
	{"getClientListByUids", `{"uids":["u1","u2"]}`, call{"GetClientListByUIDs", []any{[]string{"u1", "u2"}}}, `{"result":{"u1":["c1","c2"],"u2":[]},"partial":false,"missing":[]}`},
	{"batchGetClientIdByUid", `{"uids":["u1"]}`, call{"GetClientListByUIDs", []any{[]string{"u1"}}}, `{"result":{"u1":["c1","c2"]},"partial":false,"missing":[]}`},
	{"batchGetClientCountByGroup", `{"groups":["g0"]}`, call{"GetClientCountByGroups", []any{[]string{"g0"}}}, `{"result":{"g0":0},"partial":false,"missing":[]}`},
	{"protect", `{"client":"c1"}`, call{"Protect", []any{"c1", true}}, null},
	{"protect", `{"client":"c1","protect":false}`, call{"Protect", []any{"c1", false}}, null},
	{"pauseRecv", `{"client":"c1"}`, call{"PauseRecv", []any{"c1"}}, null},
	{"resumeRecv", `{"client":"c1"}`, call{"ResumeRecv", []any{"c1"}}, null},
	{"confirm", `{"client":"c1"}`, call{"Confirm", []any{"c1"}}, null},
	{"setBinary", `{"client":"c1"}`, call{"SetBinary", []any{"c1", true}}, null},
	{"setBinary", `{"client":"c1","binary":false}`, call{"SetBinary", []any{"c1", false}}, null},
	{"bindUid", `{"client":"c1","uid":"u1"}`, call{"BindUID", []any{"c1", "u1"}}, null},
	{"unbindUid", `{"client":"c1"}`, call{"UnbindUID", []any{"c1"}}, null},
	{"unBindUid", `{"client":"c1"}`, call{"UnbindUID", []any{"c1"}}, null},
	{"joinGroup", `{"client":"c1","group":"g"}`, call{"JoinGroup", []any{"c1", "g"}}, null},
	{"leaveGroup", `{"client":"c1","group":"g"}`, call{"LeaveGroup", []any{"c1", "g"}}, null},
	{"unGroup", `{"group":"g"}`, call{"UnGroup", []any{"g"}}, null},
	{"setSession", `{"client":"c1","session":{"a":1,"b":"x","big":12345678901234567890,"o":{"p":[true,null]}}}`,
		call{"SetSession", []any{"c1", api.Session{"a": json.Number("1"), "b": "x", "big": json.Number("12345678901234567890"),
			"o": map[string]any{"p": []any{true, nil}}}}}, null},
	{"updateSession", `{"client":"c1","session":{}}`, call{"UpdateSession", []any{"c1", api.Session{}}}, null},
	{"deleteSession", `{"client":"c1"}`, call{"DeleteSession", []any{"c1"}}, null},
	{"getSession", `{"client":"c1"}`, call{"GetSession", []any{"c1"}}, `{"result":{"k":"v","n":1}}`},
	{"getStats", `{}`, call{"GetStats", nil}, `{"result":{"time_unix_ms":1000,` +
		`"totals":{"gateways":1,"workers":1,"connections":2,"uids":0,"groups":0,"messages_in":5,"messages_out":0,"bytes_in":0,"bytes_out":0,"accepted":0,"closed":0,` +
		`"events_sent":0,"events_acked":0,"in_flight":0,"workers_busy":0,"workers_idle":1,"processes":1,"processes_failing":0},` +
		`"gateways":[{"gateway":"gw1","pid":7,"started_unix_ms":0,"now_unix_ms":0,"rss_bytes":0,"bus":"","connections":2,"uids":0,"groups":0,` +
		`"messages_in":5,"messages_out":0,"bytes_in":0,"bytes_out":0,"accepted":0,"closed":0,"events_sent":0,"events_acked":0,"in_flight":0,"redelivered":0,` +
		`"queued_bytes":0,"dispatch":"uid","workers_busy":0,"workers_idle":0,"workers":[{"id":"w1","batches":0,"events":3,"state":"idle"}],` +
		`"processes":[{"name":"p1","pid":8,"started_unix_ms":0,"ready":true,"restarts":1,"failing":false}]}],` +
		`"workers":[{"id":"w1","batches":0,"events":3,"state":"idle"}],` +
		`"processes":[{"gateway":"gw1","name":"p1","pid":8,"started_unix_ms":0,"ready":true,"restarts":1,"failing":false}]},"partial":true,"missing":["gw2"]}`},
}

func TestMethods(t *testing.T) {
	h, f := newHandler(t, httpapi.Config{})
	for i, tc := range methodCases {
		t.Run(fmt.Sprintf("%02d_%s", i, tc.path), func(t *testing.T) {
			w := do(h, http.MethodPost, "/api/"+tc.path, tc.body, map[string]string{"Content-Type": "application/json"})
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			jsonEqual(t, w.Body.Bytes(), tc.wantBody)
			got, ok := f.last()
			if !ok {
				t.Fatal("no call")
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("call = %#v\nwant   %#v", got, tc.want)
			}
			if !f.hasDeadline {
				t.Error("API call has no deadline")
			}
		})
	}
}

// TestMethodsCovered checks that methodCases exercises every dispatched name.
func TestMethodsCovered(t *testing.T) {
	h, _ := newHandler(t, httpapi.Config{})
	for _, name := range h.DispatchNames() {
		if !slices.ContainsFunc(methodCases, func(c methodCase) bool { return c.path == name }) {
			t.Errorf("method %s has no case in methodCases", name)
		}
	}
}

func TestBinaryMessages(t *testing.T) {
	payloads := [][]byte{
		[]byte("\x00"),
		[]byte("a\r\nb\r\n"),
		[]byte("trailing spaces   "),
		[]byte("  \t leading and trailing \n "),
		{0xff, 0xfe, 0x00, 0x80, '\r', '\n', ' '},
		[]byte("héllo \u2028 wörld"),
	}
	h, f := newHandler(t, httpapi.Config{})
	for i, p := range payloads {
		bodies := []string{
			fmt.Sprintf(`{"client":"c1","message_base64":%q}`, base64.StdEncoding.EncodeToString(p)),
		}
		if utf8.Valid(p) {
			js, _ := json.Marshal(string(p))
			bodies = append(bodies, `{"client":"c1","message":`+string(js)+`}`)
		}
		for _, body := range bodies {
			w := do(h, http.MethodPost, "/api/sendToClient", body, nil)
			if w.Code != http.StatusOK {
				t.Fatalf("payload %d: status %d: %s", i, w.Code, w.Body)
			}
			got, _ := f.last()
			if !bytes.Equal(got.Args[1].([]byte), p) {
				t.Errorf("payload %d via %s: got %q, want %q", i, body, got.Args[1], p)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name      string
		apiErr    error
		method    string // HTTP method, default POST
		path      string
		body      string
		header    map[string]string
		status    int
		code      string
		msg       string // substring of the message
		hdr, hval string // a response header expected
	}{
		{name: "syntax", path: "sendToAll", body: `{"message":`, status: 400, code: "invalid_json", msg: "offset"},
		{name: "syntax mid", path: "isOnline", body: `{"client" "c1"}`, status: 400, code: "invalid_json", msg: "offset 10"},
		{name: "trailing data", path: "isOnline", body: `{"client":"c1"} {}`, status: 400, code: "invalid_json", msg: "after the object"},
		{name: "trailing garbage", path: "isOnline", body: `{"client":"c1"} x`, status: 400, code: "invalid_json"},
		{name: "not utf8", path: "isOnline", body: "{\"client\":\"\xff\"}", status: 400, code: "invalid_json", msg: "UTF-8"},
		{name: "not object", path: "isOnline", body: `["c1"]`, status: 400, code: "invalid_request", msg: "want object, got array"},
		{name: "null body", path: "getClientCount", body: `null`, status: 400, code: "invalid_request", msg: "want object, got null"},
		{name: "wrong type", path: "getClientList", body: `{"limit":"10"}`, status: 400, code: "invalid_request", msg: `field "limit": want integer, got string`},
		{name: "fraction", path: "getClientList", body: `{"limit":1.5}`, status: 400, code: "invalid_request", msg: `field "limit": want integer, got number 1.5`},
		{name: "client number", path: "isOnline", body: `{"client":1}`, status: 400, code: "invalid_request", msg: `field "client": want string, got number`},
		{name: "bool", path: "getUidList", body: `{"unique":"yes"}`, status: 400, code: "invalid_request", msg: `field "unique": want boolean, got string`},
		{name: "array elem", path: "sendToUid", body: `{"uids":["a",2],"message":"x"}`, status: 400, code: "invalid_request", msg: `field "uids": want array of strings, got an element of type number`},
		{name: "array", path: "sendToUid", body: `{"uids":"a","message":"x"}`, status: 400, code: "invalid_request", msg: `field "uids": want array of strings, got string`},
		{name: "session type", path: "setSession", body: `{"client":"c","session":[1]}`, status: 400, code: "invalid_request", msg: `field "session": want object, got array`},
		{name: "missing", path: "isOnline", body: `{}`, status: 400, code: "invalid_request", msg: `field "client": required`},
		{name: "missing empty body", path: "bindUid", body: ``, status: 400, code: "invalid_request", msg: `field "client": required`},
		{name: "missing session", path: "setSession", body: `{"client":"c"}`, status: 400, code: "invalid_request", msg: `field "session": required`},
		{name: "null required", path: "isOnline", body: `{"client":null}`, status: 400, code: "invalid_request", msg: `field "client": must not be null`},
		{name: "unknown field", path: "isOnline", body: `{"client":"c1","clinet":"c1"}`, status: 400, code: "invalid_request", msg: `unknown field "clinet"`},
		{name: "unknown case", path: "isOnline", body: `{"Client":"c1"}`, status: 400, code: "invalid_request", msg: `unknown field "Client"`},
		{name: "no fields", path: "getClientCount", body: `{"x":1}`, status: 400, code: "invalid_request", msg: `unknown field "x"`},
		{name: "two final messages", path: "closeClient", body: `{"client":"c","message":"a","message_base64":"YQ=="}`, status: 400, code: "invalid_request", msg: `give only one of "message" and "message_base64"`},
		{name: "bad final base64", path: "closeUid", body: `{"uid":"u","message_base64":"!"}`, status: 400, code: "invalid_request", msg: `field "message_base64": invalid base64`},
		{name: "sendToClients no clients", path: "sendToClients", body: `{"message":"x"}`, status: 400, code: "invalid_request", msg: `field "clients": required`},
		{name: "isUidsOnline not a list", path: "isUidsOnline", body: `{"uids":"u"}`, status: 400, code: "invalid_request", msg: `field "uids": want array of strings, got string`},
		{name: "closeUid no uid", path: "closeUid", body: `{"force":true}`, status: 400, code: "invalid_request", msg: `field "uid": required`},
		{name: "duplicate", path: "isOnline", body: `{"client":"a","client":"b"}`, status: 400, code: "invalid_request", msg: `field "client": given more than once`},
		{name: "both messages", path: "sendToAll", body: `{"message":"a","message_base64":"YQ=="}`, status: 400, code: "invalid_request", msg: "only one of"},
		{name: "no message", path: "sendToAll", body: `{}`, status: 400, code: "invalid_request", msg: `one of "message" and "message_base64" and "data" is required`},
		{name: "message and data", path: "sendToAll", body: `{"message":"a","data":{}}`, status: 400, code: "invalid_request", msg: "only one of"},
		{name: "empty listener", path: "getClientCount", body: `{"listeners":["ws",""]}`, status: 400, code: "invalid_request", msg: `field "listeners": empty listener name`},
		{name: "listener not a string", path: "getClientCount", body: `{"listener":["ws"]}`, status: 400, code: "invalid_request", msg: `field "listener": want string, got array`},
		{name: "getStats has no scope", path: "getStats", body: `{"listener":"ws"}`, status: 400, code: "invalid_request", msg: `unknown field "listener"`},
		{name: "unknown listener", apiErr: &api.UnknownListenerError{Name: "nope", Known: []string{"tcp", "ws"}}, path: "sendToAll", body: `{"message":"x","listener":"nope"}`, status: 400, code: "unknown_listener", msg: `unknown listener "nope"`},
		{name: "null message", path: "sendToClient", body: `{"client":"c","message":null}`, status: 400, code: "invalid_request", msg: "is required"},
		{name: "bad base64", path: "sendToAll", body: `{"message_base64":"YQ=!"}`, status: 400, code: "invalid_request", msg: `field "message_base64": invalid base64`},
		{name: "no uid", path: "sendToUid", body: `{"message":"x"}`, status: 400, code: "invalid_request", msg: `one of "uid" and "uids" is required`},
		{name: "empty uids", path: "sendToUid", body: `{"uids":[],"message":"x"}`, status: 400, code: "invalid_request", msg: `field "uids": want at least one uid`},
		{name: "no group", path: "sendToGroup", body: `{"message":"x"}`, status: 400, code: "invalid_request", msg: `one of "group" and "groups" is required`},
		{name: "negative limit", path: "getGroupList", body: `{"limit":-1}`, status: 400, code: "invalid_request", msg: `field "limit": must not be negative, got -1`},
		{name: "percent zero", path: "getUidCount", body: `{"unique_percent":0}`, status: 400, code: "invalid_request", msg: `field "unique_percent": must be greater than 0 and at most 1, got 0`},
		{name: "percent big", path: "getUidCount", body: `{"unique_percent":1.5}`, status: 400, code: "invalid_request", msg: `field "unique_percent"`},
		{name: "percent negative", path: "getUidCount", body: `{"unique_percent":-0.1}`, status: 400, code: "invalid_request", msg: `field "unique_percent"`},
		{name: "fields big", path: "getClientInfo", body: `{"client":"c","fields":256}`, status: 400, code: "invalid_request", msg: `field "fields": must be between 0 and 255, got 256`},
		{name: "invalid client", apiErr: fmt.Errorf("parse %q: %w", "zz", api.ErrInvalidClient), path: "isOnline", body: `{"client":"zz"}`, status: 400, code: "invalid_client", msg: "invalid client id"},
		{name: "not found", apiErr: api.ErrNotFound, path: "getSession", body: `{"client":"c"}`, status: 404, code: "not_found"},
		{name: "invalid argument", apiErr: fmt.Errorf("bind: empty uid: %w", api.ErrInvalidArgument), path: "bindUid", body: `{"client":"c","uid":""}`, status: 400, code: "invalid_request", msg: "empty uid"},
		{name: "api timeout", apiErr: api.ErrTimeout, path: "closeClient", body: `{"client":"c"}`, status: 504, code: "timeout"},
		{name: "deadline", apiErr: fmt.Errorf("wait: %w", context.DeadlineExceeded), path: "getClientCount", status: 504, code: "timeout"},
		{name: "overloaded", apiErr: fmt.Errorf("%w: sendToGroup", api.ErrOverloaded), path: "sendToGroup", body: `{"group":"g","message":"x"}`, status: 503, code: "overloaded", hdr: "Retry-After", hval: "1"},
		{name: "closed", apiErr: api.ErrClosed, path: "getClientCount", status: 503, code: "unavailable"},
		{name: "task no payload", path: "task", body: `{}`, status: 400, code: "invalid_request", msg: `"payload"`},
		{name: "task bad base64", path: "task", body: `{"payload_base64":"!"}`, status: 400, code: "invalid_request", msg: `"payload_base64"`},
		{name: "taskWait timeout 0", path: "taskWait", body: `{"payload":"x","timeout_ms":0}`, status: 400, code: "invalid_request", msg: `field "timeout_ms"`},
		{name: "taskWait timeout big", path: "taskWait", body: `{"payload":"x","timeout_ms":60001}`, status: 400, code: "invalid_request", msg: `field "timeout_ms"`},
		{name: "task too large", apiErr: fmt.Errorf("x: %w", api.ErrTaskPayloadTooLarge), path: "task", body: `{"payload":"x"}`, status: 413, code: "invalid_request", msg: "too large"},
		{name: "no task worker", apiErr: api.ErrNoTaskWorker, path: "taskWait", body: `{"payload":"x"}`, status: 504, code: "timeout"},
		{name: "task timeout", apiErr: api.ErrTaskTimeout, path: "taskWait", body: `{"payload":"x"}`, status: 504, code: "timeout"},
		{name: "task lost", apiErr: api.ErrTaskLost, path: "taskWait", body: `{"payload":"x"}`, status: 503, code: "unavailable"},
		{name: "canceled", apiErr: context.Canceled, path: "getClientCount", status: 503, code: "unavailable"},
		{name: "internal", apiErr: errors.New("db password is hunter2"), path: "getClientCount", status: 500, code: "internal", msg: "internal error"},
		{name: "unknown method", path: "sendToMars", status: 404, code: "unknown_method", msg: `"sendToMars"`},
		{name: "empty method", path: "", method: http.MethodPost, status: 405, code: "method_not_allowed", hdr: "Allow", hval: "GET, HEAD"},
		{name: "nested path", path: "sendToAll/x", status: 404, code: "not_found"},
		{name: "GET method", method: http.MethodGet, path: "sendToAll", status: 405, code: "method_not_allowed", hdr: "Allow", hval: "POST"},
		{name: "PUT method", method: http.MethodPut, path: "isOnline", status: 405, code: "method_not_allowed", hdr: "Allow", hval: "POST"},
		{name: "POST openapi", method: http.MethodPost, path: "openapi.json", status: 405, code: "method_not_allowed", hdr: "Allow", hval: "GET, HEAD"},
		{name: "curl form default is read as JSON", path: "isOnline", body: `client=c`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 400, code: "invalid_json"},
		{name: "text/plain", path: "isOnline", body: `{"client":"c"}`, header: map[string]string{"Content-Type": "text/plain"}, status: 415, code: "unsupported_media_type"},
		{name: "bad content type", path: "isOnline", body: `{"client":"c"}`, header: map[string]string{"Content-Type": "application/json; charset"}, status: 415, code: "unsupported_media_type"},
		{name: "latin1", path: "isOnline", body: `{"client":"c"}`, header: map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}, status: 415, code: "unsupported_media_type"},
		{name: "too large", path: "sendToAll", body: `{"message":"` + strings.Repeat("x", 200) + `"}`, status: 413, code: "too_large"},
		{name: "no token", path: "isOnline", body: `{"client":"c"}`, header: map[string]string{"Authorization": ""}, status: 401, code: "unauthorized", hdr: "WWW-Authenticate", hval: `Bearer realm="gatework"`},
		{name: "wrong token", path: "isOnline", body: `{"client":"c"}`, header: map[string]string{"Authorization": "Bearer nope"}, status: 401, code: "unauthorized", msg: "wrong"},
		{name: "token prefix", path: "isOnline", body: `{"client":"c"}`, header: map[string]string{"Authorization": "Bearer " + testToken[:4]}, status: 401, code: "unauthorized"},
		{name: "basic auth", path: "isOnline", body: `{"client":"c"}`, header: map[string]string{"Authorization": "Basic " + testToken}, status: 401, code: "unauthorized"},
		{name: "token on docs", method: http.MethodGet, path: "openapi.json", header: map[string]string{"Authorization": ""}, status: 401, code: "unauthorized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			f := &fakeAPI{err: tc.apiErr}
			h, err := httpapi.New(f, httpapi.Config{
				Token:        testToken,
				MaxBodyBytes: 128,
				Logger:       slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			if err != nil {
				t.Fatal(err)
			}
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			w := do(h, method, "/api/"+tc.path, tc.body, tc.header)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			code, msg := errorOf(t, w.Body.Bytes())
			if code != tc.code {
				t.Errorf("code %q, want %q (message %q)", code, tc.code, msg)
			}
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not contain %q", msg, tc.msg)
			}
			if tc.hdr != "" && w.Header().Get(tc.hdr) != tc.hval {
				t.Errorf("header %s = %q, want %q", tc.hdr, w.Header().Get(tc.hdr), tc.hval)
			}
			if tc.code == "internal" {
				if strings.Contains(msg, "hunter2") {
					t.Errorf("internal details leaked: %q", msg)
				}
				if !strings.Contains(logs.String(), "hunter2") {
					t.Errorf("internal error not logged: %s", logs.String())
				}
			}
			if tc.apiErr == nil && tc.status != http.StatusOK && f.count() != 0 {
				t.Errorf("a bad request reached the API: %v", f.calls)
			}
		})
	}
}

func TestUnknownLengthTooLarge(t *testing.T) {
	h, f := newHandler(t, httpapi.Config{MaxBodyBytes: 64})
	body := `{"message":"` + strings.Repeat("x", 100) + `"}`
	r := httptest.NewRequest(http.MethodPost, "/api/sendToAll", io.MultiReader(strings.NewReader(body)))
	r.ContentLength = -1
	r.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if code, _ := errorOf(t, w.Body.Bytes()); code != "too_large" || f.count() != 0 {
		t.Errorf("code %q, calls %d", code, f.count())
	}
}

func TestContentTypes(t *testing.T) {
	h, _ := newHandler(t, httpapi.Config{})
	for _, ct := range []string{"", "application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8", "application/merge-patch+json"} {
		w := do(h, http.MethodPost, "/api/isOnline", `{"client":"c"}`, map[string]string{"Content-Type": ct})
		if w.Code != http.StatusOK {
			t.Errorf("Content-Type %q: status %d: %s", ct, w.Code, w.Body)
		}
	}
}

func TestTimeout(t *testing.T) {
	h, f := newHandler(t, httpapi.Config{Timeout: 20 * time.Millisecond})
	f.block = true
	start := time.Now()
	w := do(h, http.MethodPost, "/api/getClientCount", ``, nil)
	if w.Code != http.StatusGatewayTimeout {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if code, _ := errorOf(t, w.Body.Bytes()); code != "timeout" {
		t.Errorf("code %q", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestDefaultTimeout(t *testing.T) {
	h, f := newHandler(t, httpapi.Config{})
	before := time.Now()
	if w := do(h, http.MethodPost, "/api/getClientCount", ``, nil); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if !f.hasDeadline {
		t.Fatal("no deadline")
	}
	if left := f.deadline.Sub(before); left < 9*time.Second || left > 11*time.Second {
		t.Errorf("deadline %v after the request, want about %v", left, httpapi.DefaultTimeout)
	}
}

// TestTaskWaitOwnTimeout: taskWait's timeout_ms, not the handler's
// Timeout (http.timeout), bounds the call: a task that takes longer than
// Timeout but less than timeout_ms answers; the call's context leaves
// room for the longest timeout_ms.
func TestTaskWaitOwnTimeout(t *testing.T) {
	h, f := newHandler(t, httpapi.Config{Timeout: 50 * time.Millisecond})
	f.taskDelay = 300 * time.Millisecond
	before := time.Now()
	w := do(h, http.MethodPost, "/api/taskWait", `{"payload":"abc","timeout_ms":5000}`, nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"result":"cba"`) {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if left := f.deadline.Sub(before); !f.hasDeadline || left < 60*time.Second || left > 70*time.Second {
		t.Errorf("deadline %v after the request (set: %v), want the longest timeout_ms (60s) and a little", left, f.hasDeadline)
	}
	// Other methods keep the handler's Timeout.
	if w := do(h, http.MethodPost, "/api/getClientCount", ``, nil); w.Code != http.StatusOK {
		t.Fatalf("getClientCount: status %d", w.Code)
	}
	if left := f.deadline.Sub(before); left > time.Second {
		t.Errorf("getClientCount: deadline %v after the request, want about 50ms", left)
	}
}

func TestPanicIsInternal(t *testing.T) {
	h, f := newHandler(t, httpapi.Config{})
	f.panicMsg = "boom"
	w := do(h, http.MethodPost, "/api/getClientCount", ``, nil)
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", w.Code)
	}
	if code, _ := errorOf(t, w.Body.Bytes()); code != "internal" {
		t.Errorf("code %q", code)
	}
}

func TestNewValidates(t *testing.T) {
	f := &fakeAPI{}
	bad := []struct {
		name string
		a    api.API
		cfg  httpapi.Config
	}{
		{"nil api", nil, httpapi.Config{Token: "x"}},
		{"negative body", f, httpapi.Config{Token: "x", MaxBodyBytes: -1}},
		{"negative timeout", f, httpapi.Config{Token: "x", Timeout: -time.Second}},
		{"space in token", f, httpapi.Config{Token: "a b"}},
		{"newline in token", f, httpapi.Config{Token: "ab\n"}},
	}
	for _, tc := range bad {
		if _, err := httpapi.New(tc.a, tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

func TestAuth(t *testing.T) {
	f := &fakeAPI{}
	var logs bytes.Buffer
	open, err := httpapi.New(f, httpapi.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "loopback"); n != 1 {
		t.Errorf("want one warning about loopback, got %d: %s", n, logs.String())
	}
	closed, err := httpapi.New(f, httpapi.Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		h      http.Handler
		remote string
		auth   string
		status int
	}{
		{"token right", closed, "192.0.2.1:1234", "Bearer " + testToken, 200},
		{"token lower-case scheme", closed, "192.0.2.1:1234", "bearer " + testToken, 200},
		{"token missing", closed, "127.0.0.1:1234", "", 401},
		{"token wrong", closed, "127.0.0.1:1234", "Bearer " + testToken + "x", 401},
		{"token empty", closed, "127.0.0.1:1234", "Bearer ", 401},
		{"open loopback v4", open, "127.0.0.1:1234", "", 200},
		{"open loopback 127/8", open, "127.1.2.3:1234", "", 200},
		{"open loopback v6", open, "[::1]:1234", "", 200},
		{"open loopback mapped", open, "[::ffff:127.0.0.1]:1234", "", 200},
		{"open remote v4", open, "192.0.2.1:1234", "", 403},
		{"open remote v6", open, "[2001:db8::1]:1234", "", 403},
		{"open remote with some token", open, "10.0.0.1:1234", "Bearer x", 403},
		{"open garbage addr", open, "nonsense", "", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:7280/api/isOnline", strings.NewReader(`{"client":"c"}`))
			r.Header.Set("Content-Type", "application/json")
			r.RemoteAddr = tc.remote
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			tc.h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			switch tc.status {
			case 401:
				if code, _ := errorOf(t, w.Body.Bytes()); code != "unauthorized" {
					t.Errorf("code %q", code)
				}
				if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
				}
			case 403:
				if code, _ := errorOf(t, w.Body.Bytes()); code != "forbidden" {
					t.Errorf("code %q", code)
				}
			}
		})
	}
}

// TestRealSocket runs the handler behind a real HTTP server on 127.0.0.1.
func TestRealSocket(t *testing.T) {
	for _, token := range []string{"", testToken} {
		t.Run(fmt.Sprintf("token=%q", token), func(t *testing.T) {
			f := &fakeAPI{}
			h, err := httpapi.New(f, httpapi.Config{Token: token})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			payload := []byte("\x00bin\r\n  ")
			body := fmt.Sprintf(`{"uid":"u1","uids":["u2"],"message_base64":%q}`, base64.StdEncoding.EncodeToString(payload))
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/sendToUid", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, got)
			}
			jsonEqual(t, got, null)
			want := call{"SendToUID", []any{[]string{"u1", "u2"}, payload, []string(nil)}}
			if c, _ := f.last(); !reflect.DeepEqual(c, want) {
				t.Errorf("call %#v, want %#v", c, want)
			}

			resp, err = srv.Client().Get(srv.URL + "/api/openapi.json")
			if err != nil {
				t.Fatal(err)
			}
			got, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			wantStatus := http.StatusOK
			if token != "" {
				wantStatus = http.StatusUnauthorized
			}
			if resp.StatusCode != wantStatus || !json.Valid(got) {
				t.Errorf("GET openapi.json: status %d, valid JSON %v", resp.StatusCode, json.Valid(got))
			}
		})
	}
}

// TestListenerScope: listener and listeners (combined, repeats dropped)
// scope the call through api.API.OnListeners; without them there is no
// scope.
func TestListenerScope(t *testing.T) {
	for _, tc := range []struct {
		path, body string
		want       []string // nil: no OnListeners call
	}{
		{"getClientCount", `{"listener":"ws","listeners":["tcp","ws"]}`, []string{"ws", "tcp"}},
		{"sendToAll", `{"message":"x","listeners":["devices"]}`, []string{"devices"}},
		{"closeClient", `{"client":"c1","listener":"ws"}`, []string{"ws"}},
		{"getClientList", `{"limit":3}`, nil},
		{"getClientList", `{"listeners":[]}`, nil},
	} {
		t.Run(tc.path, func(t *testing.T) {
			h, f := newHandler(t, httpapi.Config{})
			w := do(h, http.MethodPost, "/api/"+tc.path, tc.body, map[string]string{"Content-Type": "application/json"})
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			f.mu.Lock()
			calls := slices.Clone(f.calls)
			f.mu.Unlock()
			var scoped []string
			for _, c := range calls {
				if c.Method == "OnListeners" {
					scoped = c.Args[0].([]string)
				}
			}
			if !slices.Equal(scoped, tc.want) {
				t.Errorf("OnListeners(%v), want %v (calls %v)", scoped, tc.want, calls)
			}
		})
	}
}
