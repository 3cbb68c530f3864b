package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestBadInput feeds one node every kind of bad input, each answered
// precisely, and checks after each that two bystander clients (ws and tcp)
// still get their echoes.
func TestBadInput(t *testing.T) {
	const token = "s3cret-token"
	const maxMessage = 1024
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}, token: token, maxMessage: maxMessage})
	a := cl.n.API()
	bystanders := []*client{cl.dial(t, "ws"), cl.dial(t, "tcp")}
	for _, b := range bystanders {
		b.who()
	}
	ctx := ctxFor(t, 55*time.Second)
	stats := func() map[string]uint64 { return cl.n.Gateway().Stats().Closes }
	checkBystanders := func(t *testing.T) {
		t.Helper()
		for _, b := range bystanders {
			b.send("still here")
			b.expect("still here")
		}
	}
	// wantError checks an HTTP error answer: status, code, and words the
	// message must contain.
	wantError := func(t *testing.T, rep httpReply, err error, status int, code string, words ...string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var env envelope
		if err := json.Unmarshal(rep.Body, &env); err != nil || env.Error == nil {
			t.Fatalf("http %d %s: want an error body (%v)", rep.Status, rep.Body, err)
		}
		if rep.Status != status || env.Error.Code != code {
			t.Fatalf("http %d %s: want %d %s", rep.Status, rep.Body, status, code)
		}
		for _, w := range words {
			if !strings.Contains(env.Error.Message, w) {
				t.Fatalf("error message %q does not name %q", env.Error.Message, w)
			}
		}
	}
	post := func(method string, body any) (httpReply, error) { return cl.post(ctx, method, token, body) }

	// A gone client: connected, then closed.
	gone := cl.dial(t, "ws")
	gone.who()
	gone.close()
	waitFor(t, 10*time.Second, "the closed client to be offline", func() bool {
		ok, err := a.IsOnline(ctx, gone.id)
		return err == nil && !ok
	})

	t.Run("malformed client id", func(t *testing.T) {
		methods := []struct {
			name string
			body map[string]any
			call func(id string) error
		}{
			{"isOnline", nil, func(id string) error { _, err := a.IsOnline(ctx, id); return err }},
			{"getClientInfo", nil, func(id string) error { _, err := a.GetClientInfo(ctx, id, api.FieldAll); return err }},
			{"sendToClient", map[string]any{"message": "x"}, func(id string) error { return a.SendToClient(ctx, id, []byte("x")) }},
			{"closeClient", nil, func(id string) error { return a.CloseClient(ctx, id, false) }},
			{"bindUid", map[string]any{"uid": "u"}, func(id string) error { return a.BindUID(ctx, id, "u") }},
			{"unbindUid", nil, func(id string) error { return a.UnbindUID(ctx, id) }},
			{"joinGroup", map[string]any{"group": "g"}, func(id string) error { return a.JoinGroup(ctx, id, "g") }},
			{"leaveGroup", map[string]any{"group": "g"}, func(id string) error { return a.LeaveGroup(ctx, id, "g") }},
			{"setSession", map[string]any{"session": map[string]any{}}, func(id string) error { return a.SetSession(ctx, id, api.Session{}) }},
			{"updateSession", map[string]any{"session": map[string]any{"a": 1}}, func(id string) error { return a.UpdateSession(ctx, id, api.Session{"a": 1}) }},
			{"deleteSession", nil, func(id string) error { return a.DeleteSession(ctx, id) }},
			{"getSession", nil, func(id string) error { _, err := a.GetSession(ctx, id); return err }},
		}
		for _, id := range []string{"zz", "", "0123456789", "0123456789012345678g", "ABCDEF0123ABCDEF0123", "0123456789012345678901", bystanders[0].id + " "} {
			for _, m := range methods {
				body := map[string]any{"client": id}
				for k, v := range m.body {
					body[k] = v
				}
				rep, err := post(m.name, body)
				if id == "" {
					// An empty required field is a missing field.
					if rep.Status != http.StatusBadRequest {
						t.Fatalf("%s client %q: http %d %s, want 400", m.name, id, rep.Status, rep.Body)
					}
				} else {
					wantError(t, rep, err, http.StatusBadRequest, "invalid_client")
				}
				if err := m.call(id); !errors.Is(err, api.ErrInvalidClient) {
					t.Fatalf("Go %s client %q: %v, want ErrInvalidClient", m.name, id, err)
				}
			}
		}
		checkBystanders(t)
	})

	t.Run("closed client", func(t *testing.T) {
		rep, err := post("isOnline", map[string]any{"client": gone.id})
		if err != nil || rep.Status != http.StatusOK || strings.TrimSpace(string(rep.Body)) != `{"result":false}` {
			t.Fatalf("isOnline closed: %d %s %v", rep.Status, rep.Body, err)
		}
		if ok, err := a.IsOnline(ctx, gone.id); err != nil || ok {
			t.Fatalf("Go IsOnline closed = %v, %v", ok, err)
		}
		rep, err = post("getClientInfo", map[string]any{"client": gone.id})
		wantError(t, rep, err, http.StatusNotFound, "not_found")
		if _, err := a.GetClientInfo(ctx, gone.id, api.FieldAll); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("Go GetClientInfo closed: %v, want ErrNotFound", err)
		}
		for _, m := range []struct {
			name string
			body map[string]any
		}{
			{"bindUid", map[string]any{"uid": "u"}},
			{"joinGroup", map[string]any{"group": "g"}},
			{"setSession", map[string]any{"session": map[string]any{"a": 1}}},
			{"getSession", nil},
		} {
			body := map[string]any{"client": gone.id}
			for k, v := range m.body {
				body[k] = v
			}
			rep, err := post(m.name, body)
			wantError(t, rep, err, http.StatusNotFound, "not_found")
		}
		rep, err = post("sendToClient", map[string]any{"client": gone.id, "message": "lost"})
		if err != nil || rep.Status != http.StatusOK || strings.TrimSpace(string(rep.Body)) != `{"result":null}` {
			t.Fatalf("sendToClient closed: %d %s %v; want 200 null", rep.Status, rep.Body, err)
		}
		if err := a.SendToClient(ctx, gone.id, []byte("lost")); err != nil {
			t.Fatalf("Go SendToClient closed: %v", err)
		}
		checkBystanders(t)
	})

	t.Run("unknown method", func(t *testing.T) {
		rep, err := post("sendToEverybody", map[string]any{})
		wantError(t, rep, err, http.StatusNotFound, "unknown_method", "sendToEverybody")
		checkBystanders(t)
	})

	t.Run("bad JSON", func(t *testing.T) {
		for _, body := range []string{`{"client":`, `not json`, `{"client":"x"}}`, "{\"client\":\"\xff\"}"} {
			rep, err := post("isOnline", body)
			wantError(t, rep, err, http.StatusBadRequest, "invalid_json")
		}
		checkBystanders(t)
	})

	t.Run("wrong type", func(t *testing.T) {
		for _, c := range []struct {
			method string
			body   string
			field  string
		}{
			{"isOnline", `{"client":5}`, "client"},
			{"getClientList", `{"limit":"x"}`, "limit"},
			{"getClientList", `{"limit":-1}`, "limit"},
			{"getClientInfo", `{"client":"` + bystanders[0].id + `","fields":"all"}`, "fields"},
			{"closeClient", `{"client":"` + bystanders[0].id + `","force":"yes"}`, "force"},
			{"sendToUid", `{"uids":"a","message":"m"}`, "uids"},
			{"sendToClient", `{"client":"` + bystanders[0].id + `","message":7}`, "message"},
			{"sendToClient", `{"client":"` + bystanders[0].id + `","message_base64":"!!"}`, "message_base64"},
			{"setSession", `{"client":"` + bystanders[0].id + `","session":[1]}`, "session"},
			{"getUidCount", `{"unique_percent":"half"}`, "unique_percent"},
			{"getUidList", `{"unique":1}`, "unique"},
		} {
			rep, err := post(c.method, c.body)
			wantError(t, rep, err, http.StatusBadRequest, "invalid_request", c.field)
		}
		checkBystanders(t)
	})

	t.Run("HTTP method and media type", func(t *testing.T) {
		base := "http://" + cl.n.HTTPAddr().String() + "/api/"
		for _, c := range []struct {
			method, path, ctype string
			status              int
			code                string
		}{
			{http.MethodGet, "isOnline", "", http.StatusMethodNotAllowed, "method_not_allowed"},
			{http.MethodPost, "isOnline", "text/plain", http.StatusUnsupportedMediaType, "unsupported_media_type"},
			{http.MethodPost, "a/b", "application/json", http.StatusNotFound, "not_found"},
		} {
			req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, strings.NewReader(`{"client":"`+bystanders[0].id+`"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			resp, err := cl.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			wantError(t, httpReply{Status: resp.StatusCode, Header: resp.Header, Body: body}, err, c.status, c.code)
			if c.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != http.MethodPost {
				t.Fatalf("405 with Allow %q, want POST", resp.Header.Get("Allow"))
			}
		}
		checkBystanders(t)
	})

	t.Run("token", func(t *testing.T) {
		for _, tok := range []string{"", "wrong", token + "x"} {
			rep, err := cl.post(ctx, "getClientCount", tok, map[string]any{})
			wantError(t, rep, err, http.StatusUnauthorized, "unauthorized")
		}
		rep, err := cl.post(ctx, "getClientCount", token, map[string]any{})
		if err != nil || rep.Status != http.StatusOK {
			t.Fatalf("right token: %d %s %v", rep.Status, rep.Body, err)
		}
		checkBystanders(t)
	})

	// closedBy sends a bad message on a fresh client and checks the close
	// (code for WebSocket) and the counter of reason.
	closedBy := func(t *testing.T, proto, reason string, wsCode int, bad func(c *client) error) {
		t.Helper()
		before := stats()[reason]
		c := cl.dial(t, proto)
		c.who()
		if err := bad(c); err != nil {
			t.Fatal(err)
		}
		f, msgs := c.expectClosed()
		if len(msgs) != 0 || f.code != closeCodeWant(proto, wsCode) {
			t.Fatalf("got %q then %v; want close code %d", msgs, f, closeCodeWant(proto, wsCode))
		}
		waitFor(t, 10*time.Second, "the "+reason+" counter", func() bool { return stats()[reason] == before+1 })
		checkBystanders(t)
	}

	t.Run("ws message too large", func(t *testing.T) {
		closedBy(t, "ws", "message_too_large", websocket.CloseMessageTooBig, func(c *client) error {
			return c.write(make([]byte, maxMessage+1), true)
		})
	})
	t.Run("ws message at the limit", func(t *testing.T) {
		c := cl.dial(t, "ws")
		msg := strings.Repeat("m", maxMessage)
		c.send(msg)
		c.expect(msg)
	})
	t.Run("tcp message too large", func(t *testing.T) {
		closedBy(t, "tcp", "message_too_large", 0, func(c *client) error {
			return c.write([]byte(strings.Repeat("m", maxMessage+1)), false)
		})
	})
	t.Run("tcp line too long without delimiter", func(t *testing.T) {
		closedBy(t, "tcp", "message_too_large", 0, func(c *client) error {
			c.wmu.Lock()
			defer c.wmu.Unlock()
			_, err := c.tc.Write([]byte(strings.Repeat("m", 2*maxMessage)))
			return err
		})
	})
	t.Run("invalid UTF-8 text frame", func(t *testing.T) {
		closedBy(t, "ws", "invalid_utf8", websocket.CloseInvalidFramePayloadData, func(c *client) error {
			return c.writeFrame(websocket.TextMessage, []byte("bad \xff\xfe"))
		})
	})

	t.Run("ping pong", func(t *testing.T) {
		c := cl.dial(t, "ws")
		if err := c.ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(writeTimeout)); err != nil {
			t.Fatal(err)
		}
		f, err := c.recv(recvTimeout)
		if err != nil || f.kind != kindPong || string(f.data) != "are you there" {
			t.Fatalf("got %v, %v; want pong \"are you there\"", f, err)
		}
		c.send("after ping")
		c.expect("after ping")
		checkBystanders(t)
	})

	t.Run("reject", func(t *testing.T) {
		before := stats()["rejected"]
		// In OnWebSocketConnect.
		c := cl.dialWS(t, "reject=403")
		f, msgs := c.expectClosed()
		if len(msgs) != 0 || f.code != 4403 || f.text != "no" {
			t.Fatalf("rejected upgrade: %q then %v; want close 4403 \"no\"", msgs, f)
		}
		// From a message handler, on WebSocket and TCP.
		for _, proto := range []string{"ws", "tcp"} {
			c := cl.dial(t, proto)
			c.who()
			c.send("/reject 403 no")
			f, msgs := c.expectClosed()
			if len(msgs) != 0 || f.code != closeCodeWant(proto, 4403) || (proto == "ws" && f.text != "no") {
				t.Fatalf("%s rejected in OnMessage: %q then %v; want close 4403 \"no\"", proto, msgs, f)
			}
		}
		waitFor(t, 10*time.Second, "the rejected counter", func() bool { return stats()["rejected"] == before+3 })
		checkBystanders(t)
	})
}
