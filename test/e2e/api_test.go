package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/internal/clientid"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestAPI runs every API method over real sockets: clients on WebSocket or
// on TCP, the app's worker in the node's process or in a separate process,
// and the calls made through the Go api.Client or through the HTTP API.
func TestAPI(t *testing.T) {
	for _, mode := range []string{"inproc", "process"} {
		for _, proto := range []string{"ws", "tcp"} {
			for _, via := range []string{"go", "http"} {
				t.Run(mode+"/"+proto+"/"+via, func(t *testing.T) {
					cc := clusterConfig{}
					if mode == "inproc" {
						cc.app = &testapp.Config{}
					} else {
						cc.processes = true
					}
					cl := startCluster(t, cc)
					if mode == "process" {
						cl.startWorker(t, "-concurrency", "8")
					}
					var a api.API = cl.n.API()
					if via == "http" {
						a = httpAPI{c: cl}
					}
					apiScenario(t, cl, a, proto)
				})
			}
		}
	}
}

// apiScenario drives every API method and the handler-side mutations with
// five clients of protocol proto: an observer (uid "observer", to which the
// app reports close events) and c1…c4.
func apiScenario(t *testing.T, cl *cluster, a api.API, proto string) {
	ctx := ctxFor(t, 50*time.Second)
	start := time.Now()
	gw := cl.n.Gateway().ID()

	obs := cl.dial(t, proto)
	obs.send("/bind " + testapp.ObserverUID)
	if w := obs.who(); w.UID != testapp.ObserverUID {
		t.Fatalf("observer: uid %q after /bind", w.UID)
	}
	c1, c2, c3, c4 := cl.dial(t, proto), cl.dial(t, proto), cl.dial(t, proto), cl.dial(t, proto)
	all := []*client{obs, c1, c2, c3, c4}
	for _, c := range all[1:] {
		w := c.who()
		if w.UID != "" || len(w.Groups) != 0 || len(w.Session) != 0 || w.Protocol != proto || w.Listener != proto || w.Gateway != gw {
			t.Fatalf("fresh client: %+v", w)
		}
		if !strings.HasPrefix(c.id, gw) || len(c.id) != 20 {
			t.Fatalf("client id %q: want 20 characters starting with the gateway id %s", c.id, gw)
		}
	}

	// Handler-side mutations are visible to the client's very next event.
	c1.send("/bind ua")
	checkWho(t, c1, "ua", []string{}, api.Session{})
	c1.send("/join g1")
	c1.send("/join g2")
	checkWho(t, c1, "ua", []string{"g1", "g2"}, api.Session{})
	c1.send(`/session {"a":1,"s":"x"}`)
	checkWho(t, c1, "ua", []string{"g1", "g2"}, api.Session{"a": 1, "s": "x"})
	c1.send(`/update {"b":2,"s":"y"}`)
	checkWho(t, c1, "ua", []string{"g1", "g2"}, api.Session{"a": 1, "b": 2, "s": "y"})
	c1.send("/delsession")
	checkWho(t, c1, "ua", []string{"g1", "g2"}, api.Session{})
	c1.send(`/session {"k":"c1"}`)
	// Within one handler, the Context's view follows its own mutations.
	c1.send("/multi um gm")
	var w testapp.Who
	if err := json.Unmarshal(c1.next().data, &w); err != nil || w.UID != "um" || !slices.Equal(w.Groups, []string{"g1", "g2", "gm"}) {
		t.Fatalf("/multi: handler saw %+v (%v), want uid um, groups g1 g2 gm", w, err)
	}
	checkWho(t, c1, "um", []string{"g1", "g2", "gm"}, api.Session{"k": "c1"})
	c1.send("/leave gm")
	c1.send("/bind ua")
	checkWho(t, c1, "ua", []string{"g1", "g2"}, api.Session{"k": "c1"})
	// Handler-side API calls.
	c1.send("/tell observer hi-observer")
	obs.expect("hi-observer")
	c1.send("/count")
	c1.expect("count 5")

	// API mutations are applied when the call returns: the client's next
	// event sees them. Last bind wins.
	must(t, "BindUID c2 x", a.BindUID(ctx, c2.id, "x"))
	must(t, "BindUID c2 ub", a.BindUID(ctx, c2.id, "ub"))
	checkWho(t, c2, "ub", []string{}, api.Session{})
	checkList(t, "GetClientListByUID x", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByUID(ctx, "x", pr) }, 0), nil)
	checkList(t, "GetClientListByUID ub", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByUID(ctx, "ub", pr) }, 0), []string{c2.id})
	must(t, "JoinGroup c2 g1", a.JoinGroup(ctx, c2.id, "g1"))
	must(t, "SetSession c2", a.SetSession(ctx, c2.id, api.Session{"k": "c2"}))
	checkWho(t, c2, "ub", []string{"g1"}, api.Session{"k": "c2"})
	must(t, "BindUID c3 ua", a.BindUID(ctx, c3.id, "ua"))
	must(t, "JoinGroup c3 g2", a.JoinGroup(ctx, c3.id, "g2"))
	checkWho(t, c3, "ua", []string{"g2"}, api.Session{})
	// Now: obs observer []; c1 ua [g1 g2]; c2 ub [g1]; c3 ua [g2]; c4 none.

	// Yes/no and counts.
	if ok, err := a.IsOnline(ctx, c1.id); err != nil || !ok {
		t.Fatalf("IsOnline c1 = %v, %v", ok, err)
	}
	for uid, want := range map[string]bool{"ua": true, "ub": true, "nobody": false} {
		if b, err := a.IsUIDOnline(ctx, uid); err != nil || b.Value != want || b.Partial {
			t.Fatalf("IsUIDOnline %s = %+v, %v; want %v", uid, b, err, want)
		}
	}
	checkCount(t, "GetClientCount", func() (api.Count, error) { return a.GetClientCount(ctx) }, 5)
	for g, want := range map[string]int{"g1": 2, "g2": 2, "none": 0} {
		checkCount(t, "GetClientCountByGroup "+g, func() (api.Count, error) { return a.GetClientCountByGroup(ctx, g) }, want)
	}

	// Lists, walked in small pages.
	for _, limit := range []int{0, 1, 2, 100} {
		checkList(t, fmt.Sprintf("GetClientList limit %d", limit),
			walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientList(ctx, pr) }, limit), idsOf(all...))
	}
	checkList(t, "GetClientListByGroup g2", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByGroup(ctx, "g2", pr) }, 1), idsOf(c1, c3))
	checkList(t, "GetClientListByGroup none", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByGroup(ctx, "none", pr) }, 1), nil)
	checkList(t, "GetClientListByUID ua", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByUID(ctx, "ua", pr) }, 1), idsOf(c1, c3))
	for _, unique := range []bool{true, false} {
		checkList(t, fmt.Sprintf("GetUIDList unique=%v", unique),
			walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetUIDList(ctx, unique, pr) }, 2), []string{"observer", "ua", "ub"})
		checkList(t, fmt.Sprintf("GetUIDListByGroup g1 unique=%v", unique),
			walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetUIDListByGroup(ctx, "g1", unique, pr) }, 1), []string{"ua", "ub"})
		checkList(t, fmt.Sprintf("GetUIDListByGroup g2 unique=%v", unique),
			walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetUIDListByGroup(ctx, "g2", unique, pr) }, 1), []string{"ua"})
		checkList(t, fmt.Sprintf("GetGroupList unique=%v", unique),
			walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetGroupList(ctx, unique, pr) }, 1), []string{"g1", "g2"})
	}
	checkCount(t, "GetUIDCount exact", func() (api.Count, error) { return a.GetUIDCount(ctx, 0) }, 3)
	checkCount(t, "GetUIDCount 0.5", func() (api.Count, error) { return a.GetUIDCount(ctx, 0.5) }, 1) // intval(3 × 0.5), as the originals
	checkCount(t, "GetUIDCount 1", func() (api.Count, error) { return a.GetUIDCount(ctx, 1) }, 3)
	checkCount(t, "GetUIDCountByGroup g1", func() (api.Count, error) { return a.GetUIDCountByGroup(ctx, "g1") }, 2)
	checkCount(t, "GetUIDCountByGroup g2", func() (api.Count, error) { return a.GetUIDCountByGroup(ctx, "g2") }, 1)
	cs, err := a.GetClientSessionsByGroup(ctx, "g1")
	if err != nil || cs.Partial || !jsonEq(cs.Sessions, map[string]api.Session{c1.id: {"k": "c1"}, c2.id: {"k": "c2"}}) {
		t.Fatalf("GetClientSessionsByGroup g1 = %+v, %v", cs, err)
	}

	// GetClientInfo: each field alone, then all.
	checkClientInfo(t, ctx, a, c1, gw, proto, start)

	// Sessions through the API: replace, shallow merge, read, clear.
	must(t, "SetSession c2", a.SetSession(ctx, c2.id, api.Session{"x": 1, "y": "s", "o": map[string]any{"p": 1}}))
	checkSession(t, ctx, a, c2.id, api.Session{"x": 1, "y": "s", "o": map[string]any{"p": 1}})
	must(t, "UpdateSession c2", a.UpdateSession(ctx, c2.id, api.Session{"y": "t", "z": true, "o": map[string]any{"q": 2}}))
	merged := api.Session{"x": 1, "y": "t", "z": true, "o": map[string]any{"q": 2}}
	checkSession(t, ctx, a, c2.id, merged)
	checkWho(t, c2, "ub", []string{"g1"}, merged)
	must(t, "DeleteSession c2", a.DeleteSession(ctx, c2.id))
	checkSession(t, ctx, a, c2.id, api.Session{})
	checkWho(t, c2, "ub", []string{"g1"}, api.Session{})
	must(t, "SetSession c2", a.SetSession(ctx, c2.id, api.Session{"k": "c2"}))

	// Sends. After each, a marker to everyone (same bus subject, so it
	// arrives after the send's message) tells who got what.
	must(t, "SendToClient c4", a.SendToClient(ctx, c4.id, []byte("to c4")))
	c4.expect("to c4")
	fanouts := []struct {
		name string
		send func(msg []byte) error
		want []*client
	}{
		{"SendToUID ua", func(m []byte) error { return a.SendToUID(ctx, []string{"ua"}, m) }, []*client{c1, c3}},
		{"SendToUID ua ub without c3", func(m []byte) error { return a.SendToUID(ctx, []string{"ua", "ub"}, m, c3.id) }, []*client{c1, c2}},
		{"SendToUID ua ua nobody", func(m []byte) error { return a.SendToUID(ctx, []string{"ua", "ua", "nobody"}, m) }, []*client{c1, c3}},
		{"SendToGroup g1", func(m []byte) error { return a.SendToGroup(ctx, []string{"g1"}, m) }, []*client{c1, c2}},
		{"SendToGroup g1 g2", func(m []byte) error { return a.SendToGroup(ctx, []string{"g1", "g2"}, m) }, []*client{c1, c2, c3}},
		{"SendToGroup g1 g2 without c1", func(m []byte) error { return a.SendToGroup(ctx, []string{"g1", "g2"}, m, c1.id) }, []*client{c2, c3}},
		{"SendToAll", func(m []byte) error { return a.SendToAll(ctx, m) }, all},
		{"SendToAll without c4 obs", func(m []byte) error { return a.SendToAll(ctx, m, c4.id, obs.id) }, []*client{c1, c2, c3}},
	}
	for i, f := range fanouts {
		msg := fmt.Sprintf("fanout-%d %s", i, f.name)
		must(t, f.name, f.send([]byte(msg)))
		marker := fmt.Sprintf("marker-%d", i)
		must(t, "SendToAll marker", a.SendToAll(ctx, []byte(marker)))
		for _, c := range all {
			var want []string
			if slices.Contains(f.want, c) {
				want = []string{msg}
			}
			if got := c.until(marker); !slices.Equal(got, want) {
				t.Fatalf("%s: client %s got %q, want %q", f.name, c.id, got, want)
			}
		}
	}

	// Groups: leaving the last member makes the group disappear; UnGroup
	// dissolves a group and leaves its members connected.
	must(t, "LeaveGroup c2 g1", a.LeaveGroup(ctx, c2.id, "g1"))
	checkList(t, "GetClientListByGroup g1", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByGroup(ctx, "g1", pr) }, 0), idsOf(c1))
	c1.send("/leave g1")
	checkWho(t, c1, "ua", []string{"g2"}, api.Session{"k": "c1"})
	checkList(t, "GetGroupList after the last member left g1", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetGroupList(ctx, true, pr) }, 0), []string{"g2"})
	checkCount(t, "GetClientCountByGroup g1", func() (api.Count, error) { return a.GetClientCountByGroup(ctx, "g1") }, 0)
	must(t, "UnGroup g2", a.UnGroup(ctx, "g2"))
	// UnGroup returns once the bus took it (a broadcast): poll.
	waitFor(t, 10*time.Second, "g2 to disappear after UnGroup", func() bool {
		pg, err := a.GetGroupList(ctx, true, api.PageRequest{})
		return err == nil && len(pg.Items) == 0
	})
	for _, c := range []*client{c1, c3} {
		if ok, err := a.IsOnline(ctx, c.id); err != nil || !ok {
			t.Fatalf("IsOnline %s after UnGroup = %v, %v", c.id, ok, err)
		}
	}
	checkWho(t, c1, "ua", []string{}, api.Session{"k": "c1"})
	checkWho(t, c3, "ua", []string{}, api.Session{})
	must(t, "UnbindUID c3", a.UnbindUID(ctx, c3.id))
	checkWho(t, c3, "", []string{}, api.Session{})
	checkList(t, "GetClientListByUID ua", walk(t, func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByUID(ctx, "ua", pr) }, 0), idsOf(c1))

	// A handler's graceful close sends the queued message, then closes.
	c4.send("/close bye")
	checkClosed(t, c4, []string{"bye"}, 1000)
	checkCloseReport(t, obs, testapp.Closed{Client: c4.id, Reason: "close_requested", Groups: []string{}, Session: api.Session{}})

	// CloseClient graceful: everything queued before it arrives, then the
	// close frame. OnClose still sees the uid, groups and session.
	must(t, "BindUID c3 uc", a.BindUID(ctx, c3.id, "uc"))
	must(t, "JoinGroup c3 gc", a.JoinGroup(ctx, c3.id, "gc"))
	must(t, "SetSession c3", a.SetSession(ctx, c3.id, api.Session{"last": "yes"}))
	var queued []string
	for i := range 20 {
		m := fmt.Sprintf("q%02d %s", i, strings.Repeat("x", 2048))
		queued = append(queued, m)
		must(t, "SendToClient c3", a.SendToClient(ctx, c3.id, []byte(m)))
	}
	must(t, "CloseClient c3 graceful", a.CloseClient(ctx, c3.id, false))
	checkClosed(t, c3, queued, 1000)
	checkCloseReport(t, obs, testapp.Closed{Client: c3.id, Reason: "close_requested", UID: "uc", Groups: []string{"gc"}, Session: api.Session{"last": "yes"}})

	// A closed client: offline, not found, sends to it are no-ops.
	if ok, err := a.IsOnline(ctx, c3.id); err != nil || ok {
		t.Fatalf("IsOnline closed c3 = %v, %v", ok, err)
	}
	if _, err := a.GetClientInfo(ctx, c3.id, api.FieldAll); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("GetClientInfo closed c3: %v, want ErrNotFound", err)
	}
	must(t, "SendToClient closed c3", a.SendToClient(ctx, c3.id, []byte("nobody")))

	// CloseClient force: the socket closes at once, without a close frame.
	must(t, "CloseClient c2 force", a.CloseClient(ctx, c2.id, true))
	if ok, err := a.IsOnline(ctx, c2.id); err != nil || ok {
		t.Fatalf("IsOnline c2 after a forced close = %v, %v", ok, err)
	}
	f, _ := c2.expectClosed()
	if want := closeCodeWant(proto, websocket1006); f.code != want {
		t.Fatalf("forced close: %v, want code %d", f, want)
	}
	checkCloseReport(t, obs, testapp.Closed{Client: c2.id, Reason: "close_requested", UID: "ub", Groups: []string{}, Session: api.Session{"k": "c2"}})

	// The client closes: OnClose sees what it had.
	c1.close()
	checkCloseReport(t, obs, testapp.Closed{Client: c1.id, Reason: "client_closed", UID: "ua", Groups: []string{}, Session: api.Session{"k": "c1"}})
	waitFor(t, 10*time.Second, "the client count to drop to 1", func() bool {
		n, err := a.GetClientCount(ctx)
		return err == nil && n.Value == 1
	})
}

const websocket1006 = 1006

// closeCodeWant is the close code a client reader reports: the WebSocket
// code for ws, 0 (no code) for TCP.
func closeCodeWant(proto string, code int) int {
	if proto == "tcp" {
		return 0
	}
	return code
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "!" + err.Error()
	}
	return string(b)
}

// jsonEq compares two values by their JSON encoding (sorted keys, numbers
// as JSON numbers whatever their Go type).
func jsonEq(a, b any) bool {
	var x, y any
	_ = json.Unmarshal([]byte(jsonOf(a)), &x)
	_ = json.Unmarshal([]byte(jsonOf(b)), &y)
	return jsonOf(x) == jsonOf(y)
}

// checkWho asks c's handler for its state and compares.
func checkWho(t *testing.T, c *client, uid string, groups []string, session api.Session) {
	t.Helper()
	w := c.who()
	if w.Groups == nil {
		w.Groups = []string{}
	}
	if w.UID != uid || !slices.Equal(w.Groups, groups) || !jsonEq(w.Session, session) {
		t.Fatalf("client %s: handler sees uid %q groups %q session %s; want %q %q %s",
			c.id, w.UID, w.Groups, jsonOf(w.Session), uid, groups, jsonOf(session))
	}
}

func checkCount(t *testing.T, what string, f func() (api.Count, error), want int) {
	t.Helper()
	n, err := f()
	if err != nil || n.Value != want || n.Partial || len(n.Missing) > 0 {
		t.Fatalf("%s = %+v, %v; want %d, not partial", what, n, err, want)
	}
}

func checkSession(t *testing.T, ctx context.Context, a api.API, client string, want api.Session) {
	t.Helper()
	s, err := a.GetSession(ctx, client)
	if err != nil || !jsonEq(s, want) {
		t.Fatalf("GetSession %s = %s, %v; want %s", client, jsonOf(s), err, jsonOf(want))
	}
}

// walk follows a paginated list to its end with the given limit, checking
// that items ascend (so never repeat) across pages and that no page is
// larger than the limit, and returns them.
func walk(t *testing.T, page func(api.PageRequest) (api.Page, error), limit int) []string {
	t.Helper()
	var out []string
	cursor := ""
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatalf("pagination does not end: %d pages", i)
		}
		pg, err := page(api.PageRequest{Cursor: cursor, Limit: limit})
		if err != nil {
			t.Fatalf("page %d (cursor %q): %v", i, cursor, err)
		}
		if pg.Partial {
			t.Fatalf("page %d: partial, missing %v", i, pg.Missing)
		}
		if limit > 0 && len(pg.Items) > limit {
			t.Fatalf("page %d: %d items, limit %d", i, len(pg.Items), limit)
		}
		for _, it := range pg.Items {
			if len(out) > 0 && it <= out[len(out)-1] {
				t.Fatalf("page %d: item %q after %q: not ascending (repeat?)", i, it, out[len(out)-1])
			}
			out = append(out, it)
		}
		if pg.NextCursor == "" {
			return out
		}
		if len(pg.Items) == 0 {
			t.Fatalf("page %d: empty page with next cursor %q", i, pg.NextCursor)
		}
		cursor = pg.NextCursor
	}
}

func checkList(t *testing.T, what string, got, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

// checkClosed waits for c's connection to end and checks the messages that
// came first and the close code (WebSocket only).
func checkClosed(t *testing.T, c *client, wantMsgs []string, wsCode int) {
	t.Helper()
	f, msgs := c.expectClosed()
	if !slices.Equal(msgs, wantMsgs) {
		t.Fatalf("client %s: before the close got %d messages %q, want %d", c.id, len(msgs), shortAll(msgs), len(wantMsgs))
	}
	if want := closeCodeWant(c.proto, wsCode); f.code != want {
		t.Fatalf("client %s: %v, want close code %d", c.id, f, want)
	}
}

func shortAll(ms []string) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = short(m)
	}
	return out
}

// checkCloseReport reads the app's report of a close event from the
// observer and compares it with want.
func checkCloseReport(t *testing.T, obs *client, want testapp.Closed) {
	t.Helper()
	if got := readCloseReport(t, obs); !jsonEq(got, want) {
		t.Fatalf("OnClose saw %s, want %s", jsonOf(got), jsonOf(want))
	}
}

// readCloseReport reads the observer's next message, the app's report of
// a close event.
func readCloseReport(t *testing.T, obs *client) testapp.Closed {
	t.Helper()
	f := obs.next()
	js, ok := strings.CutPrefix(string(f.data), "closed ")
	if !ok {
		t.Fatalf("observer: got %v, want a close report", f)
	}
	var got testapp.Closed
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatalf("observer: %v: %v", f, err)
	}
	if got.Groups == nil {
		got.Groups = []string{}
	}
	if got.Session == nil {
		got.Session = api.Session{}
	}
	return got
}

// checkClientInfo asks for each field of c alone, then for all of them.
func checkClientInfo(t *testing.T, ctx context.Context, a api.API, c *client, gw, proto string, start time.Time) {
	t.Helper()
	for _, f := range []api.Fields{api.FieldRemoteIP, api.FieldRemotePort, api.FieldUID, api.FieldSession, api.FieldGroups, api.FieldSystem, api.FieldAll} {
		info, err := a.GetClientInfo(ctx, c.id, f)
		if err != nil {
			t.Fatalf("GetClientInfo fields %d: %v", f, err)
		}
		has := func(bit api.Fields) bool { return f&bit != 0 }
		problems := []string{}
		check := func(ok bool, what string) {
			if !ok {
				problems = append(problems, what)
			}
		}
		if has(api.FieldRemoteIP) {
			check(info.RemoteIP == "127.0.0.1", "remote_ip")
		} else {
			check(info.RemoteIP == "", "remote_ip not asked")
		}
		if has(api.FieldRemotePort) {
			check(info.RemotePort == c.localPort(), "remote_port")
		} else {
			check(info.RemotePort == 0, "remote_port not asked")
		}
		if has(api.FieldUID) {
			check(info.UID != nil && *info.UID == "ua", "uid")
		} else {
			check(info.UID == nil, "uid not asked")
		}
		if has(api.FieldSession) {
			check(jsonEq(info.Session, api.Session{"k": "c1"}), "session")
		} else {
			check(info.Session == nil, "session not asked")
		}
		if has(api.FieldGroups) {
			check(slices.Equal(info.Groups, []string{"g1", "g2"}), "groups")
		} else {
			check(info.Groups == nil, "groups not asked")
		}
		if has(api.FieldSystem) {
			s := info.System
			check(s != nil, "system")
			if s != nil {
				check(s.Listener == proto && s.Protocol == proto, "system listener/protocol")
				check(s.Gateway == gw, "system gateway")
				check(!s.ConnectedAt.Before(start.Add(-time.Second)) && s.ConnectedAt.Before(time.Now().Add(time.Second)), "system connected_at")
				check(!s.LastActive.Before(s.ConnectedAt), "system last_active")
				check(s.MessagesIn >= 10 && s.BytesIn > 0, "system messages_in/bytes_in")
				check(s.MessagesOut >= 5 && s.BytesOut > 0, "system messages_out/bytes_out")
			}
		} else {
			check(info.System == nil, "system not asked")
		}
		if len(problems) > 0 {
			t.Fatalf("GetClientInfo fields %d = %s: wrong %v", f, jsonOf(info), problems)
		}
	}
	// A well-formed id that names no connection of this gateway, and one
	// of a gateway that does not exist.
	for _, id := range []string{clientid.Make(gw, 1<<30), clientid.Make("0123456789", 1)} {
		if _, err := a.GetClientInfo(ctx, id, api.FieldAll); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("GetClientInfo unknown %s: %v, want ErrNotFound", id, err)
		}
		if ok, err := a.IsOnline(ctx, id); err != nil || ok {
			t.Fatalf("IsOnline unknown %s = %v, %v", id, ok, err)
		}
	}
}

// TestClientInfoFieldsZero: fields 0 means all fields (bus protocol:
// "0 = 255"), through the Go client and through HTTP alike.
func TestClientInfoFieldsZero(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	c := cl.dial(t, "ws")
	c.send("/bind zero")
	c.who()
	ctx := ctxFor(t, 20*time.Second)
	info, err := cl.n.API().GetClientInfo(ctx, c.id, 0)
	if err != nil || info.UID == nil || *info.UID != "zero" || info.System == nil || info.RemoteIP == "" {
		t.Fatalf("Go GetClientInfo fields 0 = %s, %v; want every field", jsonOf(info), err)
	}
	var keys map[string]json.RawMessage
	if err := (httpAPI{c: cl}).call(ctx, "getClientInfo", map[string]any{"client": c.id, "fields": 0}, &keys, nil); err != nil {
		t.Fatal(err)
	}
	var all map[string]json.RawMessage
	if err := (httpAPI{c: cl}).call(ctx, "getClientInfo", map[string]any{"client": c.id, "fields": 255}, &all, nil); err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(all) {
		got := slices.Sorted(maps.Keys(keys))
		want := slices.Sorted(maps.Keys(all))
		t.Fatalf("HTTP getClientInfo fields 0: keys %q, want those of 255: %q", got, want)
	}
}

// TestCallerOrder: messages from one caller to one client arrive in the
// order they were sent, whichever method sent them (client-addressed
// commands and broadcasts travel on different bus subjects), and a
// broadcast mutation (UnGroup) is ordered with the caller's next
// client-addressed one.
func TestCallerOrder(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	ctx := ctxFor(t, 50*time.Second)
	for _, proto := range []string{"ws", "tcp"} {
		c := cl.dial(t, proto)
		c.send("/bind order-" + proto)
		c.send("/join order")
		c.who()
		for _, via := range []struct {
			name string
			a    api.API
			n    int
		}{{"go", cl.n.API(), 400}, {"http", httpAPI{c: cl}, 100}} {
			a := via.a
			sends := []func(m []byte) error{
				func(m []byte) error { return a.SendToClient(ctx, c.id, m) },
				func(m []byte) error { return a.SendToUID(ctx, []string{"order-" + proto}, m) },
				func(m []byte) error { return a.SendToClient(ctx, c.id, m) },
				func(m []byte) error { return a.SendToGroup(ctx, []string{"order"}, m) },
				func(m []byte) error { return a.SendToClient(ctx, c.id, m) },
				func(m []byte) error { return a.SendToAll(ctx, m) },
			}
			for i := range via.n {
				must(t, "send", sends[i%len(sends)](fmt.Appendf(nil, "%s-%d", via.name, i)))
			}
			for i := range via.n {
				c.expect(fmt.Sprintf("%s-%d", via.name, i))
			}
			for i := range 20 {
				g := fmt.Sprintf("re-%s-%s-%d", proto, via.name, i)
				must(t, "JoinGroup", a.JoinGroup(ctx, c.id, g))
				must(t, "UnGroup", a.UnGroup(ctx, g))
				must(t, "JoinGroup again", a.JoinGroup(ctx, c.id, g))
				pg, err := a.GetClientListByGroup(ctx, g, api.PageRequest{})
				if err != nil || !slices.Equal(pg.Items, []string{c.id}) {
					t.Fatalf("%s %s: join, ungroup, join %s: members %q, %v; want the client", proto, via.name, g, pg.Items, err)
				}
			}
		}
	}
}

// TestSessionNumbersExact: integers beyond 2^53 in a session set over HTTP
// come back exactly over HTTP (httpapi: "large integers keep their exact
// value"), from getSession, getClientInfo and getClientSessionsByGroup.
func TestSessionNumbersExact(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	c := cl.dial(t, "ws")
	c.send("/join exact")
	c.who()
	ctx := ctxFor(t, 20*time.Second)
	const session = `{"big":9007199254740993,"neg":-12345678901234567890,"f":1.5}`
	rep, err := cl.post(ctx, "setSession", "", `{"client":"`+c.id+`","session":`+session+`}`)
	if err != nil || rep.Status != http.StatusOK {
		t.Fatalf("setSession: %d %s %v", rep.Status, rep.Body, err)
	}
	var bad []string
	for _, q := range []struct{ method, body, path string }{
		{"getSession", `{"client":"` + c.id + `"}`, ""},
		{"getClientInfo", `{"client":"` + c.id + `","fields":8}`, "session"},
		{"getClientSessionsByGroup", `{"group":"exact"}`, c.id},
	} {
		rep, err := cl.post(ctx, q.method, "", q.body)
		if err != nil || rep.Status != http.StatusOK {
			t.Fatalf("%s: %d %s %v", q.method, rep.Status, rep.Body, err)
		}
		var env struct {
			Result map[string]json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(rep.Body, &env); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if q.path != "" {
			got = env.Result[q.path]
		} else {
			got, _ = json.Marshal(env.Result)
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(got, &m)
		if string(m["big"]) != "9007199254740993" || string(m["neg"]) != "-12345678901234567890" || string(m["f"]) != "1.5" {
			bad = append(bad, fmt.Sprintf("%s answered %s", q.method, got))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("session integers beyond 2^53 lost their exact value: set %s, then %s", session, strings.Join(bad, "; "))
	}
}
