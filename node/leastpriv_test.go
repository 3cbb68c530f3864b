package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/testbus"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

// startOperatorNATS starts a nats-server configured with
// bus.AuthorizationConfig (what docs/security.md tells operators of an
// external NATS), each role's password "pw-<role>", and returns its URL.
func startOperatorNATS(t *testing.T) string {
	t.Helper()
	for _, r := range bus.Roles {
		t.Setenv(bus.PasswordVar(r), "pw-"+string(r))
	}
	s, _ := bus.NewSubjects("")
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:-1\n"+bus.AuthorizationConfig(s)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return testbus.StartServer(t, opts).ClientURL()
}

// runRemoteApp runs h with an API client on one connection made with o,
// as a worker process does, until the test ends.
func runRemoteApp(t *testing.T, o bus.Options, h worker.Handlers) {
	t.Helper()
	nc, err := bus.Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(nc, api.Config{Logger: testLogger(t)})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	w, err := worker.New(nc, a, worker.Config{Logger: testLogger(t)}, h)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		nc.Close()
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker stop: %v", err)
		}
		a.Close()
		nc.Close()
	})
}

// TestLeastPrivilegeRoles runs a cluster on an external NATS whose users
// have only their role's permissions (bus.AuthorizationConfig): two
// gateway processes (bus.RoleGateway), a `gatework start` node
// (bus.RoleNode) whose worker process uses the node's credentials, a
// worker process with the worker's, and an API process (bus.RoleAPI).
// The chat crosses the gateways: routed sends to groups and uids,
// queries answered on the worker's and the node's inboxes, requests
// answered on the API process's inbox.
func TestLeastPrivilegeRoles(t *testing.T) {
	url := startOperatorNATS(t)
	subj, _ := bus.NewSubjects("")
	as := func(r bus.Role) func(*node.Config) {
		return func(c *node.Config) {
			c.NATS.URL, c.NATS.User, c.NATS.Password, c.NATS.Role = url, bus.UserName(r), "pw-"+string(r), r
			c.Worker.Handlers = nil
			c.Gateway.HeartbeatInterval = 100 * time.Millisecond
		}
	}
	// Workers first, so that their cleanup runs after the nodes' (the
	// gateways' shutdown hands close events to them). One uses the
	// credentials a node hands its worker processes (checked below).
	nodeCreds := bus.Options{URL: url, User: bus.UserName(bus.RoleNode), Password: "pw-node",
		InboxPrefix: subj.Inbox(bus.RoleNode), Name: "worker-of-node"}
	runRemoteApp(t, nodeCreds, chat.Handlers())
	runRemoteApp(t, bus.Options{URL: url, User: bus.UserName(bus.RoleWorker), Password: "pw-worker",
		InboxPrefix: subj.Inbox(bus.RoleWorker), Name: "worker"}, chat.Handlers())
	gw := func(c *node.Config) { as(bus.RoleGateway)(c); c.HTTP.HealthOnly = true }
	gw1 := startNode(t, chat.Handlers(), gw)
	gw2 := startNode(t, chat.Handlers(), gw)
	full := startNode(t, chat.Handlers(), as(bus.RoleNode))
	apiNode := startNode(t, chat.Handlers(), func(c *node.Config) { as(bus.RoleAPI)(c); c.NoGateway = true })
	if wo := full.WorkerOptions("worker-of-node"); wo != nodeCreds {
		t.Fatalf("a node's worker options: user %q inbox %q, want %q %q", wo.User, wo.InboxPrefix, nodeCreds.User, nodeCreds.InboxPrefix)
	}

	a := wsChatter(t, gw1, "a")
	b := wsChatter(t, gw2, "b")
	c := wsChatter(t, full, "c")
	// Every gateway must be known (heartbeats) before queries count on
	// them: /who and /rooms ask every live gateway.
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(apiCall(t, apiNode, "getClientCount", `{}`), `"result":3,`) })
	stale := map[*chatter]bool{}
	for i, s := range []struct {
		who  *chatter
		line string
		want map[*chatter][]string
	}{
		{a, "/name alice", map[*chatter][]string{a: {"* you are now alice"}}},
		{b, "/name bob", map[*chatter][]string{b: {"* you are now bob"}}},
		{c, "/name carol", map[*chatter][]string{c: {"* you are now carol"}}},
		{b, "/name alice", map[*chatter][]string{b: {"* the name alice is taken"}}},
		{a, "/join lobby", map[*chatter][]string{a: {"* you joined #lobby"}}},
		{b, "/join lobby", map[*chatter][]string{b: {"* you joined #lobby"}, a: {"* bob joined #lobby"}}},
		{c, "/join lobby", map[*chatter][]string{c: {"* you joined #lobby"}, a: {"* carol joined #lobby"}, b: {"* carol joined #lobby"}}},
		{a, "hello all", map[*chatter][]string{b: {"[lobby] alice: hello all"}, c: {"[lobby] alice: hello all"}}},
		{a, "/who", map[*chatter][]string{a: {"* in #lobby: alice, bob, carol"}}},
		{b, "/msg carol psst", map[*chatter][]string{b: {"[pm to carol] psst"}, c: {"[pm from bob] psst"}}},
		{c, "/msg alice hi", map[*chatter][]string{c: {"[pm to alice] hi"}, a: {"[pm from carol] hi"}}},
		{c, "/rooms", map[*chatter][]string{c: {"* rooms: #lobby"}}},
	} {
		s.who.say(s.line)
		for cl, lines := range s.want {
			for _, l := range lines {
				got := cl.next()
				// See TestChat: the announcement of alice's join may
				// reach a later member.
				if got == "* alice joined #lobby" && got != l && !stale[cl] {
					stale[cl] = true
					got = cl.next()
				}
				if got != l {
					t.Fatalf("step %d (%s: %q): %s got %q, want %q", i, s.who.name, s.line, cl.name, got, l)
				}
			}
		}
	}

	// The API process: a query, a request to one client, a routed send.
	var list struct {
		Result struct{ Items []string } `json:"result"`
	}
	if err := json.Unmarshal([]byte(apiCall(t, apiNode, "getClientListByUid", `{"uid":"bob"}`)), &list); err != nil || len(list.Result.Items) != 1 {
		t.Fatalf("getClientListByUid: %v %+v", err, list)
	}
	if got := apiCall(t, apiNode, "getSession", `{"client":"`+list.Result.Items[0]+`"}`); !strings.Contains(got, `"result"`) {
		t.Fatalf("getSession: %s", got)
	}
	if got := apiCall(t, apiNode, "sendToUid", `{"uid":"bob","message":"from the API"}`); !strings.Contains(got, `"result"`) {
		t.Fatalf("sendToUid: %s", got)
	}
	b.expect("from the API")
}

// apiCall posts body to the HTTP API method of n and returns the answer.
func apiCall(t *testing.T, n *node.Node, method, body string) string {
	t.Helper()
	resp, err := http.Post("http://"+n.HTTPAddr().String()+"/api/"+method, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestEmbeddedUserRole: the embedded server's configured user limited to
// the worker role (nats.user_role) serves a worker process of another
// machine: it answers events, and its queries and routed sends work on
// the worker's inbox prefix.
func TestEmbeddedUserRole(t *testing.T) {
	n := startNode(t, chat.Handlers(), func(c *node.Config) {
		c.Worker.Handlers = nil
		c.NATS.Listen, c.NATS.User, c.NATS.Password, c.NATS.UserRole = "127.0.0.1:0", "remote", "remote-pw", bus.RoleWorker
	})
	subj, _ := bus.NewSubjects("")
	runRemoteApp(t, bus.Options{URL: n.NATSURL(), User: "remote", Password: "remote-pw",
		InboxPrefix: subj.Inbox(bus.RoleWorker), Name: "remote-worker"}, chat.Handlers())
	a := wsChatter(t, n, "a")
	b := wsChatter(t, n, "b")
	a.say("/name alice")
	a.expect("* you are now alice")
	b.say("/name bob")
	b.expect("* you are now bob")
	b.say("/msg alice hi")
	b.expect("[pm to alice] hi")
	a.expect("[pm from bob] hi")
	a.say("/join lobby")
	a.expect("* you joined #lobby")
	a.say("/who")
	a.expect("* in #lobby: alice")
	// Close the clients while the worker runs: their close events need it.
	_ = a.ws.Close()
	_ = b.ws.Close()
	waitFor(t, 5*time.Second, func() bool {
		st := n.Gateway().Stats()
		return st.Connections == 0 && st.InFlight == 0
	})
}
