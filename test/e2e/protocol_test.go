package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestWebSocketUpgradeRequest: OnWebSocketConnect sees the upgrade
// request (method, path, query, host, headers, cookies), and what it
// stores in the session is there for the client's first message.
func TestWebSocketUpgradeRequest(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	h := http.Header{}
	h.Set("X-Test", "header value")
	h.Set("Cookie", "a=1; c=cookie-value")
	c, _, err := cl.tryDialWS(t, "remember=1&x=%20y", h)
	if err != nil {
		t.Fatal(err)
	}
	w := c.who()
	want := api.Session{
		"method": "GET", "path": "/", "query": "remember=1&x=%20y", "host": cl.n.Addr("ws").String(),
		"header": "header value", "cookie": "cookie-value", "event": "websocket_connect",
	}
	if !jsonEq(w.Session, want) {
		t.Fatalf("OnWebSocketConnect stored %s, want %s", jsonOf(w.Session), jsonOf(want))
	}
}

// TestClientCloseHandshake: a WebSocket client that sends a close frame
// gets one back, and OnClose reports client_closed with the client's uid.
func TestClientCloseHandshake(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	obs := cl.dial(t, "ws")
	obs.send("/bind " + testapp.ObserverUID)
	obs.who()
	c := cl.dial(t, "ws")
	c.send("/bind leaving")
	c.who()
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(writeTimeout)); err != nil {
		t.Fatal(err)
	}
	f, msgs := c.expectClosed()
	if len(msgs) != 0 || f.code != websocket.CloseNormalClosure {
		t.Fatalf("after the client's close frame: %q then %v; want the server's close frame 1000", msgs, f)
	}
	checkCloseReport(t, obs, testapp.Closed{Client: c.id, Reason: "client_closed", UID: "leaving", Groups: []string{}, Session: api.Session{}})
}

// TestEventBacklog: with no worker, a client that sends more events than
// max_pending_events is closed with reason event_backlog (WebSocket close
// code 1013), counted; when a worker starts, its close event is still
// delivered.
func TestEventBacklog(t *testing.T) {
	const bound = 40
	cl := startCluster(t, clusterConfig{processes: true, maxPendingEvents: bound})
	bystander := cl.dial(t, "tcp")
	bystander.send("early")
	for _, proto := range []string{"ws", "tcp"} {
		c := cl.dial(t, proto)
		c.send("/bind flood-" + proto)
		for k := range bound + 10 {
			if err := c.write(fmt.Appendf(nil, "m%d", k), false); err != nil {
				break // the gateway may have closed already
			}
		}
		f, msgs := c.expectClosed()
		if len(msgs) != 0 || f.code != closeCodeWant(proto, 1013) {
			t.Fatalf("%s flood: %q then %v; want close code 1013", proto, msgs, f)
		}
	}
	if st := cl.n.Gateway().Stats(); st.Closes["event_backlog"] != 2 {
		t.Fatalf("stats %+v: want 2 event_backlog closes", st)
	}
	log := filepath.Join(t.TempDir(), "closes.jsonl")
	cl.startWorker(t, "-closelog", log)
	bystander.expect("early")
	waitFor(t, 15*time.Second, "the close events of both flooders", func() bool {
		n := 0
		for _, c := range readCloseLog(t, log) {
			if c.Reason == "event_backlog" {
				n++
			}
		}
		return n == 2
	})
	bystander.send("late")
	bystander.expect("late")
}
