package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestIdleTimeoutAndProtect: over the whole stack, a client that sends
// nothing is closed after idle_timeout (WebSocket code 1001) and its
// handler's OnClose sees reason idle_timeout; clients protected through
// POST /api/protect stay, show it in getClientInfo, and are closed once
// the protection is lifted.
func TestIdleTimeoutAndProtect(t *testing.T) {
	const idle = 500 * time.Millisecond
	closes := make(chan testapp.Closed, 16)
	cl := startCluster(t, clusterConfig{
		app:          &testapp.Config{OnClose: func(c testapp.Closed) { closes <- c }},
		pingInterval: -1, // no pings: the gorilla client would answer them
		idleTimeout:  idle,
	})
	quiet := cl.dial(t, "ws")
	quiet.who()
	kept := cl.dial(t, "ws")
	kept.who()
	keptTCP := cl.dial(t, "tcp")
	keptTCP.who()
	must(t, "protect ws", postOK(t, cl, "protect", map[string]any{"client": kept.id}))
	must(t, "protect tcp", postOK(t, cl, "protect", map[string]any{"client": keptTCP.id, "protect": true}))
	protectedAt := time.Now()

	rep, err := cl.post(ctxFor(t, 15*time.Second), "getClientInfo", cl.token, map[string]any{"client": kept.id, "fields": 32})
	must(t, "getClientInfo", err)
	var info struct {
		Result struct {
			System struct {
				Protected bool `json:"protected"`
			} `json:"system"`
		} `json:"result"`
	}
	if rep.Status != http.StatusOK || json.Unmarshal(rep.Body, &info) != nil || !info.Result.System.Protected {
		t.Fatalf("getClientInfo: %d %s; want system.protected true", rep.Status, rep.Body)
	}

	if f, _ := quiet.expectClosed(); f.code != 1001 {
		t.Fatalf("quiet client closed with %v, want code 1001", f)
	}
	wantClose := func(id string) {
		t.Helper()
		select {
		case c := <-closes:
			if c.Client != id || c.Reason != "idle_timeout" {
				t.Fatalf("OnClose saw %+v, want %s with reason idle_timeout", c, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no close event for %s", id)
		}
	}
	wantClose(quiet.id)

	waitFor(t, 10*time.Second, "three idle timeouts", func() bool { return time.Since(protectedAt) > 3*idle })
	kept.who() // still open and served
	keptTCP.who()

	must(t, "unprotect", postOK(t, cl, "protect", map[string]any{"client": kept.id, "protect": false}))
	if f, _ := kept.expectClosed(); f.code != 1001 {
		t.Fatalf("unprotected client closed with %v, want code 1001", f)
	}
	wantClose(kept.id)
}
