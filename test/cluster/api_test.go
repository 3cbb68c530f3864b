//go:build cluster && linux

package cluster

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
)

// TestAPIAcrossGateways spreads 9 clients over 3 gateways on 3 hosts and
// checks every API method through the HTTP API process on a fourth host
// against the answer one node would give: counts, lists walked in pages
// smaller than one gateway's share, uid and group sends with without,
// sessions, UnGroup and close.
func TestAPIAcrossGateways(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	var cs []*wsClient
	for i := range 9 {
		cs = append(cs, c.dial(t, 1+i%3, true))
	}
	c.waitCount(t, 9, 15*time.Second)
	c.identify(t, cs)
	id := func(i int) string { return cs[i].id }
	ids := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, id(i))
		}
		sort.Strings(out)
		return out
	}

	// The echo workers serve every gateway.
	for i, w := range cs {
		w.send(t, "hello "+strconv.Itoa(i))
		if got := w.next(t, 10*time.Second); got != "hello "+strconv.Itoa(i) {
			t.Fatalf("client %d: echo %q", i, got)
		}
	}

	// getStats through the API process (what the web console polls):
	// every gateway with its clients and traffic, the worker processes
	// with the events they handled.
	var st api.Stats
	if r := c.ok(t, "getStats", nil); json.Unmarshal(r.Result, &st) != nil || r.Partial {
		t.Errorf("getStats = %s (partial %v)", r.Result, r.Partial)
	}
	if st.Totals.Gateways != 3 || st.Totals.Connections != 9 || st.Totals.MessagesIn < 9 || len(st.Gateways) != 3 {
		t.Errorf("getStats totals %+v, %d gateways", st.Totals, len(st.Gateways))
	}
	for _, g := range st.Gateways {
		if g.Connections != 3 || g.PID <= 0 || g.Bus != "CONNECTED" {
			t.Errorf("getStats gateway %+v", g)
		}
	}
	var events uint64
	for _, w := range st.Workers {
		events += w.Events
	}
	// A message per client; the echo workers have no OnConnect, so the
	// gateways leave the connect events out once they heard them announce
	// it (up to 9 more before that).
	if len(st.Workers) == 0 || events < 9 || events > 18 {
		t.Errorf("getStats workers %+v: %d events, want 9 to 18", st.Workers, events)
	}

	// Mutations on clients of every gateway: u1 on gateways 1 and 2, u2 on 3;
	// group g on all three, h on one.
	for _, b := range []struct {
		client int
		uid    string
	}{{0, "u1"}, {1, "u1"}, {2, "u2"}, {3, "u3"}} {
		c.ok(t, "bindUid", map[string]any{"client": id(b.client), "uid": b.uid})
	}
	c.ok(t, "unbindUid", map[string]any{"client": id(3)})
	for _, i := range []int{0, 1, 2, 3, 4} {
		c.ok(t, "joinGroup", map[string]any{"client": id(i), "group": "g"})
	}
	c.ok(t, "joinGroup", map[string]any{"client": id(5), "group": "h"})
	c.ok(t, "joinGroup", map[string]any{"client": id(6), "group": "h"})
	c.ok(t, "leaveGroup", map[string]any{"client": id(6), "group": "h"})

	counts := []struct {
		method string
		body   map[string]any
		want   int
	}{
		{"getClientCount", nil, 9},
		{"getClientCountByGroup", map[string]any{"group": "g"}, 5},
		{"getClientCountByGroup", map[string]any{"group": "h"}, 1},
		{"getClientCountByGroup", map[string]any{"group": "nobody"}, 0},
		{"getUidCount", nil, 2},
		{"getUidCountByGroup", map[string]any{"group": "g"}, 2},
	}
	for _, tc := range counts {
		if got, r := c.count(t, tc.method, tc.body); got != tc.want || r.Partial {
			t.Errorf("%s %v = %d (partial %v %v), want %d", tc.method, tc.body, got, r.Partial, r.Missing, tc.want)
		}
	}
	lists := []struct {
		method string
		body   map[string]any
		limit  int
		want   []string
	}{
		{"getClientList", nil, 2, ids(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"getClientListByGroup", map[string]any{"group": "g"}, 2, ids(0, 1, 2, 3, 4)},
		{"getClientListByUid", map[string]any{"uid": "u1"}, 1, ids(0, 1)},
		{"getUidList", map[string]any{"unique": true}, 1, []string{"u1", "u2"}},
		{"getUidList", map[string]any{"unique": false}, 1, []string{"u1", "u1", "u2"}},
		{"getUidListByGroup", map[string]any{"group": "g"}, 1, []string{"u1", "u2"}},
		{"getGroupList", nil, 1, []string{"g", "h"}},
	}
	for _, tc := range lists {
		got := c.listLoose(t, tc.method, tc.body, tc.limit)
		sort.Strings(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %v (pages of %d) = %v, want %v", tc.method, tc.body, tc.limit, got, tc.want)
		}
	}
	bools := []struct {
		method string
		body   map[string]any
		want   bool
	}{
		{"isOnline", map[string]any{"client": id(7)}, true},
		{"isUidOnline", map[string]any{"uid": "u2"}, true},
		{"isUidOnline", map[string]any{"uid": "u3"}, false},
	}
	for _, tc := range bools {
		if r := c.ok(t, tc.method, tc.body); string(r.Result) != strconv.FormatBool(tc.want) {
			t.Errorf("%s %v = %s, want %v", tc.method, tc.body, r.Result, tc.want)
		}
	}

	// Sends: each is followed by a marker to everyone, so that a client
	// that must not get the message shows the marker first.
	mark := 0
	expect := func(what string, got map[int]string) {
		t.Helper()
		mark++
		m := fmt.Sprintf("mark %d", mark)
		c.ok(t, "sendToAll", map[string]any{"message": m})
		for i, w := range cs {
			if w.isClosed() {
				continue
			}
			if want, ok := got[i]; ok {
				if msg := w.next(t, 10*time.Second); msg != want {
					t.Errorf("%s: client %d (gateway %d) got %q, want %q", what, i, w.gw, msg, want)
				}
			}
			if msg := w.next(t, 10*time.Second); msg != m {
				t.Errorf("%s: client %d (gateway %d) got %q, want only %q", what, i, w.gw, msg, m)
			}
		}
	}
	c.ok(t, "sendToUid", map[string]any{"uids": []string{"u1", "u2"}, "message": "to uids", "without": []string{id(1)}})
	expect("sendToUid without", map[int]string{0: "to uids", 2: "to uids"})
	c.ok(t, "sendToGroup", map[string]any{"groups": []string{"g", "h"}, "message": "to groups", "without": []string{id(3), id(4)}})
	expect("sendToGroup without", map[int]string{0: "to groups", 1: "to groups", 2: "to groups", 5: "to groups"})
	c.ok(t, "sendToClient", map[string]any{"client": id(8), "message": "to one"})
	expect("sendToClient", map[int]string{8: "to one"})
	c.ok(t, "sendToAll", map[string]any{"message": "to all but two", "without": []string{id(0), id(5)}})
	expect("sendToAll without", map[int]string{1: "to all but two", 2: "to all but two", 3: "to all but two",
		4: "to all but two", 6: "to all but two", 7: "to all but two", 8: "to all but two"})

	// Sessions on a client of another gateway than the previous ones.
	c.ok(t, "setSession", map[string]any{"client": id(4), "session": map[string]any{"a": 1}})
	c.ok(t, "updateSession", map[string]any{"client": id(4), "session": map[string]any{"b": "x"}})
	c.ok(t, "setSession", map[string]any{"client": id(1), "session": map[string]any{"c": true}})
	if r := c.ok(t, "getSession", map[string]any{"client": id(4)}); !jsonEqual(r.Result, `{"a":1,"b":"x"}`) {
		t.Errorf("getSession = %s", r.Result)
	}
	r := c.ok(t, "getClientSessionsByGroup", map[string]any{"group": "g"})
	want := fmt.Sprintf(`{%q:{},%q:{"c":true},%q:{},%q:{},%q:{"a":1,"b":"x"}}`, id(0), id(1), id(2), id(3), id(4))
	if !jsonEqual(r.Result, want) || r.Partial {
		t.Errorf("getClientSessionsByGroup = %s (partial %v), want %s", r.Result, r.Partial, want)
	}
	r = c.ok(t, "getClientInfo", map[string]any{"client": id(1), "fields": 4 | 8 | 16})
	if !jsonEqual(r.Result, `{"uid":"u1","session":{"c":true},"groups":["g"]}`) {
		t.Errorf("getClientInfo = %s", r.Result)
	}
	c.ok(t, "deleteSession", map[string]any{"client": id(4)})
	if r := c.ok(t, "getSession", map[string]any{"client": id(4)}); !jsonEqual(r.Result, `{}`) {
		t.Errorf("getSession after deleteSession = %s", r.Result)
	}

	// UnGroup dissolves g on every gateway; its members stay connected.
	c.ok(t, "unGroup", map[string]any{"group": "g"})
	if n, _ := c.count(t, "getClientCountByGroup", map[string]any{"group": "g"}); n != 0 {
		t.Errorf("getClientCountByGroup g after unGroup = %d", n)
	}
	if got := c.listLoose(t, "getGroupList", nil, 10); !slices.Equal(got, []string{"h"}) {
		t.Errorf("getGroupList after unGroup = %v", got)
	}
	c.ok(t, "sendToGroup", map[string]any{"group": "g", "message": "to a dissolved group"})
	expect("sendToGroup after unGroup", nil)

	// Close a client of each kind: graceful and forced.
	c.ok(t, "closeClient", map[string]any{"client": id(7)})
	c.ok(t, "closeClient", map[string]any{"client": id(2), "force": true})
	for _, i := range []int{7, 2} {
		select {
		case <-cs[i].closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("client %d not closed by closeClient", i)
		}
	}
	c.waitCount(t, 7, 10*time.Second)
	if r := c.ok(t, "isOnline", map[string]any{"client": id(7)}); string(r.Result) != "false" {
		t.Errorf("isOnline of a closed client = %s", r.Result)
	}
	if r := c.call(t, "getClientInfo", map[string]any{"client": id(2), "fields": 255}); r.Status != 404 {
		t.Errorf("getClientInfo of a closed client: status %d %+v", r.Status, r.Error)
	}
	if got := c.listLoose(t, "getClientListByUid", map[string]any{"uid": "u2"}, 10); len(got) != 0 {
		t.Errorf("u2 still has clients after its only one closed: %v", got)
	}
	expect("after close", nil)
}

// listLoose is list that returns an empty slice for no items.
func (c *cluster) listLoose(t *testing.T, method string, body map[string]any, limit int) []string {
	t.Helper()
	out := c.list(t, method, body, limit)
	if out == nil {
		out = []string{}
	}
	return out
}

// jsonEqual compares a JSON value with want, ignoring formatting and key
// order.
func jsonEqual(got json.RawMessage, want string) bool {
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
