package api_test

import (
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
	"github.com/gatework/gatework/internal/testwait"
)

// testBus is an embedded NATS for one test.
type testBus struct {
	e *natsembed.Server
}

func newTestBus(t testing.TB) *testBus {
	t.Helper()
	return &testBus{e: testbus.Start(t, natsembed.Config{})}
}

// conn returns a new connection, closed at the end of the test.
func (b *testBus) conn(t testing.TB, name string) *nats.Conn {
	t.Helper()
	return testbus.Conn(t, b.e, name)
}

// client returns an api.Client on its own connection.
func (b *testBus) client(t testing.TB, cfg api.Config) *api.Client {
	t.Helper()
	c, err := api.Dial(b.e.ConnectOptions("api-test"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// announce starts the gateways' heartbeats and waits until c knows
// exactly them.
func announce(t testing.TB, c *api.Client, gws ...*fakeGW) {
	t.Helper()
	var ids []string
	for _, g := range gws {
		ids = append(ids, g.id)
		g.startHeartbeats()
	}
	slices.Sort(ids)
	waitFor(t, 5*time.Second, "members", func() bool { return slices.Equal(c.Members(), ids) })
}

// fakeClient is one connection of a fake gateway.
type fakeClient struct {
	uid       string
	groups    map[string]bool
	session   []byte
	protected bool
}

// queryMode says how a fake gateway answers scatter-gather queries.
type queryMode int

const (
	answerQueries queryMode = iota
	ignoreQueries           // subscribed, never answers
	failQueries             // answers with an error code
)

// fakeGW is a test-only gateway: it holds fake clients and answers commands
// and queries on the bus the way the real gateway does.
type fakeGW struct {
	t  testing.TB
	id string
	nc *nats.Conn

	mu        sync.Mutex
	clients   map[uint64]*fakeClient
	nextSeq   uint64
	mode      queryMode
	delay     time.Duration // queries are answered after this long
	ignoreCmd bool          // never answer client-addressed requests
	peers     []string      // extra peers announced in query replies
	cmdCode   string        // when set, client-addressed requests fail with it
	received  []bus.Command // commands seen on Cmd without reply and on Broadcast, uid and group subjects
	routed    []string      // the subject of each command seen on Broadcast, uid and group subjects
	queries   []bus.Command // queries seen
	stats     []byte        // when set, the answer to OpStats instead of the computed one
	timers    sync.WaitGroup
	stopped   bool // the test is over: handlers do nothing
	overload  bool // heartbeats say Overloaded
	hbStop    chan struct{}
	hbDone    chan struct{}
}

func startFakeGW(t testing.TB, b *testBus, id string) *fakeGW {
	t.Helper()
	g := &fakeGW{t: t, id: id, nc: b.conn(t, "fake-"+id), clients: make(map[uint64]*fakeClient)}
	subj := bus.Subjects{Prefix: bus.DefaultPrefix}
	for s, h := range map[string]nats.MsgHandler{
		subj.Cmd(id):     g.onCmd,
		subj.Broadcast(): g.onBroadcast,
		"gw.grp.>":       g.onBroadcast, // as if the fake held every group and uid
		"gw.uid.>":       g.onBroadcast,
		subj.Query():     g.onQuery,
	} {
		if _, err := g.nc.Subscribe(s, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.stopHeartbeats()
		g.mu.Lock()
		g.stopped = true
		g.mu.Unlock()
		g.timers.Wait()
	})
	return g
}

// heartbeat announces the gateway once.
func (g *fakeGW) heartbeat(leaving bool) {
	g.mu.Lock()
	over := g.overload
	g.mu.Unlock()
	hb := bus.Heartbeat{Gateway: g.id, IntervalMs: 1000, Leaving: leaving, Overloaded: over}
	_ = g.nc.Publish(bus.Subjects{Prefix: bus.DefaultPrefix}.Heartbeat(), bus.AppendHeartbeat(nil, &hb))
}

// startHeartbeats announces the gateway every 100ms (stating 1s, so that a
// slow test machine does not make it expire) until the test ends or it dies.
func (g *fakeGW) startHeartbeats() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hbStop != nil {
		return
	}
	g.hbStop, g.hbDone = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			g.heartbeat(false)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}(g.hbStop, g.hbDone)
}

func (g *fakeGW) stopHeartbeats() {
	g.mu.Lock()
	stop, done := g.hbStop, g.hbDone
	g.hbStop = nil
	g.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// die drops the gateway's bus connection without a goodbye.
func (g *fakeGW) die() {
	g.stopHeartbeats()
	g.nc.Close()
}

// add creates a client bound to uid (may be "") in groups and returns its id.
func (g *fakeGW) add(uid string, groups ...string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextSeq++
	fc := &fakeClient{uid: uid, groups: map[string]bool{}}
	for _, gr := range groups {
		fc.groups[gr] = true
	}
	g.clients[g.nextSeq] = fc
	return clientid.Make(g.id, g.nextSeq)
}

func (g *fakeGW) remove(id string) {
	_, seq, _ := clientid.Parse(id)
	g.mu.Lock()
	delete(g.clients, seq)
	g.mu.Unlock()
}

func (g *fakeGW) set(fn func(g *fakeGW)) {
	g.mu.Lock()
	fn(g)
	g.mu.Unlock()
}

func (g *fakeGW) seen() []bus.Command {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.received)
}

func (g *fakeGW) seenQueries() []bus.Command {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.queries)
}

func decodeCmd(t testing.TB, data []byte) bus.Command {
	var cmd bus.Command
	if err := bus.DecodeCommand(data, &cmd); err != nil {
		t.Errorf("bad command: %v", err)
	}
	cmd.Data = slices.Clone(cmd.Data)
	return cmd
}

func (g *fakeGW) reply(m *nats.Msg, rep *bus.Reply) {
	rep.Gateway = g.id
	if err := m.Respond(bus.AppendReply(nil, rep)); err != nil && err != nats.ErrConnectionClosed {
		g.t.Errorf("respond: %v", err)
	}
}

func (g *fakeGW) onBroadcast(m *nats.Msg) {
	cmd := decodeCmd(g.t, m.Data)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stopped {
		g.received = append(g.received, cmd)
		g.routed = append(g.routed, m.Subject)
	}
}

// seenRouted returns the subjects of the commands seen on Broadcast, uid
// and group subjects, in order.
func (g *fakeGW) seenRouted() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.routed)
}

func (g *fakeGW) onCmd(m *nats.Msg) {
	cmd := decodeCmd(g.t, m.Data)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	if m.Reply == "" {
		g.received = append(g.received, cmd)
		return
	}
	if g.ignoreCmd {
		return
	}
	var rep bus.Reply
	if g.cmdCode != "" {
		rep.ErrorCode, rep.Error = g.cmdCode, "injected"
		g.reply(m, &rep)
		return
	}
	if cmd.Version != bus.Version || len(cmd.Clients) != 1 {
		rep.ErrorCode = bus.ErrCodeInvalidRequest
		g.reply(m, &rep)
		return
	}
	gw, seq, err := clientid.Parse(cmd.Clients[0])
	if err != nil {
		rep.ErrorCode, rep.Error = bus.ErrCodeInvalidClient, err.Error()
		g.reply(m, &rep)
		return
	}
	fc := g.clients[seq]
	if gw != g.id || fc == nil {
		if cmd.Op != bus.OpIsOnline {
			rep.ErrorCode, rep.Error = bus.ErrCodeNotFound, "no such client"
		}
		g.reply(m, &rep)
		return
	}
	switch cmd.Op {
	case bus.OpIsOnline:
		rep.Found = true
	case bus.OpClientInfo:
		rep.State = &bus.ClientState{
			RemoteIP: "192.0.2.7", RemotePort: 4242, UID: fc.uid,
			Groups: slices.Sorted(maps.Keys(fc.groups)), Session: fc.session,
			Listener: "ws", Protocol: "ws", Gateway: g.id,
			ConnectedUnixMs: 1_700_000_000_000, LastActiveUnixMs: 1_700_000_001_000,
			BytesIn: 1, BytesOut: 2, MessagesIn: 3, MessagesOut: 4,
			Protected: fc.protected,
		}
	case bus.OpCloseClient:
		delete(g.clients, seq)
		g.received = append(g.received, cmd)
	case bus.OpBindUID:
		fc.uid = cmd.Arg
	case bus.OpUnbindUID:
		fc.uid = ""
	case bus.OpJoinGroup:
		fc.groups[cmd.Arg] = true
	case bus.OpLeaveGroup:
		delete(fc.groups, cmd.Arg)
	case bus.OpSetSession:
		fc.session = slices.Clone(cmd.Data)
	case bus.OpUpdateSession:
		cur := map[string]any{}
		if len(fc.session) > 0 {
			json.Unmarshal(fc.session, &cur)
		}
		var upd map[string]any
		if err := json.Unmarshal(cmd.Data, &upd); err != nil {
			rep.ErrorCode = bus.ErrCodeInvalidRequest
			break
		}
		maps.Copy(cur, upd)
		fc.session, _ = json.Marshal(cur)
	case bus.OpDeleteSession:
		fc.session = nil
	case bus.OpProtect:
		fc.protected = cmd.Flag
	case bus.OpGetSession:
		rep.Session = fc.session
	default:
		rep.ErrorCode = bus.ErrCodeUnknownOp
	}
	g.reply(m, &rep)
}

func (g *fakeGW) onQuery(m *nats.Msg) {
	cmd := decodeCmd(g.t, m.Data)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	g.queries = append(g.queries, cmd)
	var rep bus.Reply
	switch g.mode {
	case ignoreQueries:
		return
	case failQueries:
		rep.ErrorCode, rep.Error = bus.ErrCodeInternal, "injected"
	default:
		g.answer(&cmd, &rep)
	}
	rep.Peers = append([]string{g.id}, g.peers...)
	if g.delay == 0 {
		g.reply(m, &rep)
		return
	}
	g.timers.Add(1)
	time.AfterFunc(g.delay, func() { defer g.timers.Done(); g.reply(m, &rep) })
}

// answer computes this gateway's share of a query, like the real gateway:
// lists hold each item once per gateway, sorted, after the cursor, at most
// limit of them, More when some are left.
func (g *fakeGW) answer(cmd *bus.Command, rep *bus.Reply) {
	if cmd.Op == bus.OpStats {
		rep.Stats = g.stats
		if rep.Stats == nil {
			// Every fake gateway saw worker w-a; only gw1 runs it.
			w := bus.WorkerStats{ID: "w-a", Batches: 1, Events: 2}
			if g.id == gw1 {
				w.PID, w.Bus = 42, "CONNECTED"
			}
			rep.Stats, _ = json.Marshal(bus.GatewayStats{Gateway: g.id, Connections: len(g.clients),
				MessagesIn: 10 * uint64(len(g.clients)), Workers: []bus.WorkerStats{w}})
		}
		return
	}
	arg := cmd.Arg
	var items []string
	list := false
	for seq, fc := range g.clients {
		id := func() string { return clientid.Make(g.id, seq) }
		switch cmd.Op {
		case bus.OpClientCount:
			rep.Count++
		case bus.OpClientCountByGroup:
			if fc.groups[arg] {
				rep.Count++
			}
		case bus.OpIsUIDOnline:
			rep.Found = rep.Found || fc.uid == arg
		case bus.OpClientList:
			list, items = true, append(items, id())
		case bus.OpClientListByGroup:
			list = true
			if fc.groups[arg] {
				items = append(items, id())
			}
		case bus.OpClientListByUID:
			list = true
			if fc.uid == arg {
				items = append(items, id())
			}
		case bus.OpUIDList, bus.OpUIDCount:
			list = true
			if fc.uid != "" {
				items = append(items, fc.uid)
			}
		case bus.OpUIDListByGroup, bus.OpUIDCountByGroup:
			list = true
			if fc.uid != "" && fc.groups[arg] {
				items = append(items, fc.uid)
			}
		case bus.OpGroupList:
			list = true
			for gr := range fc.groups {
				items = append(items, gr)
			}
		case bus.OpGroupSessions:
			if fc.groups[arg] {
				rep.Sessions = append(rep.Sessions, bus.ClientSession{Client: id(), Session: fc.session})
			}
		}
	}
	if !list {
		return
	}
	sort.Strings(items)
	items = slices.Compact(items)
	if cmd.Op == bus.OpUIDCount || cmd.Op == bus.OpUIDCountByGroup {
		rep.Count = uint64(len(items))
		return
	}
	items = items[sort.Search(len(items), func(i int) bool { return items[i] > cmd.Cursor }):]
	limit := int(cmd.Limit)
	if limit == 0 {
		limit = api.DefaultLimit
	}
	if len(items) > limit {
		items, rep.More = items[:limit], true
	}
	rep.Items = items
}
