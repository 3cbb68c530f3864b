package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	gw1 = "0000000001"
	gw2 = "0000000002"
	gw3 = "0000000003"
)

// clientCalls calls every client-addressed method with id.
var clientCalls = []struct {
	name string
	call func(ctx context.Context, c api.API, id string) error
}{
	{"SendToClient", func(ctx context.Context, c api.API, id string) error { return c.SendToClient(ctx, id, []byte("x")) }},
	{"IsOnline", func(ctx context.Context, c api.API, id string) error { _, err := c.IsOnline(ctx, id); return err }},
	{"GetClientInfo", func(ctx context.Context, c api.API, id string) error {
		_, err := c.GetClientInfo(ctx, id, 0)
		return err
	}},
	{"CloseClient", func(ctx context.Context, c api.API, id string) error { return c.CloseClient(ctx, id, false) }},
	{"BindUID", func(ctx context.Context, c api.API, id string) error { return c.BindUID(ctx, id, "u") }},
	{"UnbindUID", func(ctx context.Context, c api.API, id string) error { return c.UnbindUID(ctx, id) }},
	{"JoinGroup", func(ctx context.Context, c api.API, id string) error { return c.JoinGroup(ctx, id, "g") }},
	{"LeaveGroup", func(ctx context.Context, c api.API, id string) error { return c.LeaveGroup(ctx, id, "g") }},
	{"SetSession", func(ctx context.Context, c api.API, id string) error {
		return c.SetSession(ctx, id, api.Session{"a": 1})
	}},
	{"UpdateSession", func(ctx context.Context, c api.API, id string) error {
		return c.UpdateSession(ctx, id, api.Session{"a": 1})
	}},
	{"DeleteSession", func(ctx context.Context, c api.API, id string) error { return c.DeleteSession(ctx, id) }},
	{"GetSession", func(ctx context.Context, c api.API, id string) error { _, err := c.GetSession(ctx, id); return err }},
	{"Protect", func(ctx context.Context, c api.API, id string) error { return c.Protect(ctx, id, true) }},
	{"SendToUID without", func(ctx context.Context, c api.API, id string) error {
		return c.SendToUID(ctx, []string{"u"}, nil, id)
	}},
	{"SendToGroup without", func(ctx context.Context, c api.API, id string) error {
		return c.SendToGroup(ctx, []string{"g"}, nil, id)
	}},
	{"SendToAll without", func(ctx context.Context, c api.API, id string) error { return c.SendToAll(ctx, nil, id) }},
}

func TestInvalidClientIDs(t *testing.T) {
	b := newTestBus(t)
	c := b.client(t, api.Config{})
	// Everything published on the bus, to prove nothing is.
	spy := b.conn(t, "spy")
	var published atomic.Int32
	sentinel := make(chan struct{})
	if _, err := spy.Subscribe(">", func(m *nats.Msg) {
		if published.Add(1) == 1 && m.Subject == (bus.Subjects{Prefix: bus.DefaultPrefix}).Cmd(gw1) {
			close(sentinel)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	bad := []string{"", "abc", "0000000001000000000", "00000000010000000001x", "0000000001000000000G",
		"AAAAAAAAAA0000000001", "00000000010000000000", "0000000001.000000001"}
	ctx := context.Background()
	for _, call := range clientCalls {
		for _, id := range bad {
			err := call.call(ctx, c, id)
			if !errors.Is(err, api.ErrInvalidClient) {
				t.Errorf("%s(%q) = %v, want ErrInvalidClient", call.name, id, err)
				continue
			}
			if !strings.Contains(err.Error(), `"`+id+`"`) {
				t.Errorf("%s(%q): error %q does not name the id", call.name, id, err)
			}
		}
	}
	if _, err := c.GetClientList(ctx, api.PageRequest{Cursor: "nope"}); !errors.Is(err, api.ErrInvalidArgument) {
		t.Errorf("GetClientList bad cursor = %v, want ErrInvalidArgument", err)
	}
	// The client's messages are ordered: if the valid send is the first
	// one the spy sees, nothing was published before it.
	if err := c.SendToClient(ctx, clientid.Make(gw1, 1), []byte("ok")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sentinel:
	case <-time.After(5 * time.Second):
		t.Fatalf("the valid send was not the first message (%d seen)", published.Load())
	}
}

func TestInvalidArguments(t *testing.T) {
	b := newTestBus(t)
	c := b.client(t, api.Config{})
	ctx := context.Background()
	id := clientid.Make(gw1, 1)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"SendToUID none", func() error { return c.SendToUID(ctx, nil, []byte("x")) }},
		{"SendToUID empty", func() error { return c.SendToUID(ctx, []string{"a", ""}, []byte("x")) }},
		{"SendToGroup none", func() error { return c.SendToGroup(ctx, []string{}, []byte("x")) }},
		{"SendToGroup empty", func() error { return c.SendToGroup(ctx, []string{""}, []byte("x")) }},
		{"UnGroup empty", func() error { return c.UnGroup(ctx, "") }},
		{"BindUID empty", func() error { return c.BindUID(ctx, id, "") }},
		{"JoinGroup empty", func() error { return c.JoinGroup(ctx, id, "") }},
		{"LeaveGroup empty", func() error { return c.LeaveGroup(ctx, id, "") }},
		{"SetSession unencodable", func() error { return c.SetSession(ctx, id, api.Session{"c": make(chan int)}) }},
		{"IsUIDOnline empty", func() error { _, err := c.IsUIDOnline(ctx, ""); return err }},
		{"GetClientCountByGroup empty", func() error { _, err := c.GetClientCountByGroup(ctx, ""); return err }},
		{"GetClientListByGroup empty", func() error { _, err := c.GetClientListByGroup(ctx, "", api.PageRequest{}); return err }},
		{"GetClientListByUID empty", func() error { _, err := c.GetClientListByUID(ctx, "", api.PageRequest{}); return err }},
		{"GetUIDListByGroup empty", func() error { _, err := c.GetUIDListByGroup(ctx, "", true, api.PageRequest{}); return err }},
		{"GetUIDCountByGroup empty", func() error { _, err := c.GetUIDCountByGroup(ctx, ""); return err }},
		{"GetClientSessionsByGroup empty", func() error { _, err := c.GetClientSessionsByGroup(ctx, ""); return err }},
		{"negative limit", func() error { _, err := c.GetGroupList(ctx, true, api.PageRequest{Limit: -1}); return err }},
		{"percent negative", func() error { _, err := c.GetUIDCount(ctx, -0.1); return err }},
		{"percent above 1", func() error { _, err := c.GetUIDCount(ctx, 1.01); return err }},
	} {
		if err := tc.call(); !errors.Is(err, api.ErrInvalidArgument) {
			t.Errorf("%s = %v, want ErrInvalidArgument", tc.name, err)
		}
	}
}

func TestClientOps(t *testing.T) {
	b := newTestBus(t)
	g := startFakeGW(t, b, gw1)
	c := b.client(t, api.Config{})
	ctx := context.Background()
	id := g.add("")

	if on, err := c.IsOnline(ctx, id); err != nil || !on {
		t.Fatalf("IsOnline = %v, %v", on, err)
	}
	if err := c.BindUID(ctx, id, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := c.JoinGroup(ctx, id, "room2"); err != nil {
		t.Fatal(err)
	}
	if err := c.JoinGroup(ctx, id, "room1"); err != nil {
		t.Fatal(err)
	}
	if err := c.LeaveGroup(ctx, id, "room2"); err != nil {
		t.Fatal(err)
	}
	if s, err := c.GetSession(ctx, id); err != nil || s == nil || len(s) != 0 {
		t.Fatalf("empty GetSession = %#v, %v; want empty non-nil", s, err)
	}
	if err := c.SetSession(ctx, id, api.Session{"a": 1, "b": "x"}); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateSession(ctx, id, api.Session{"b": "y", "c": true}); err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSession(ctx, id)
	if err != nil || len(s) != 3 || s["a"] != json.Number("1") || s["b"] != "y" || s["c"] != true {
		t.Fatalf("GetSession = %#v, %v", s, err)
	}

	info, err := c.GetClientInfo(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.RemoteIP != "192.0.2.7" || info.RemotePort != 4242 || info.UID == nil || *info.UID != "alice" ||
		len(info.Session) != 3 || len(info.Groups) != 1 || info.Groups[0] != "room1" || info.System == nil ||
		info.System.Gateway != gw1 || info.System.MessagesOut != 4 ||
		!info.System.ConnectedAt.Equal(time.UnixMilli(1_700_000_000_000)) {
		t.Fatalf("GetClientInfo(all) = %+v / %+v", info, info.System)
	}
	if info.System.Protected {
		t.Fatal("protected before Protect")
	}
	if err := c.Protect(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if info, err := c.GetClientInfo(ctx, id, api.FieldSystem); err != nil || !info.System.Protected {
		t.Fatalf("after Protect(on): %+v, %v", info.System, err)
	}
	for _, tc := range []struct {
		fields api.Fields
		check  func(api.ClientInfo) bool
	}{
		{api.FieldRemoteIP, func(i api.ClientInfo) bool {
			return i.RemoteIP != "" && i.RemotePort == 0 && i.UID == nil && i.Session == nil && i.Groups == nil && i.System == nil
		}},
		{api.FieldRemotePort | api.FieldUID, func(i api.ClientInfo) bool {
			return i.RemoteIP == "" && i.RemotePort == 4242 && i.UID != nil && i.Session == nil && i.System == nil
		}},
		{api.FieldSession | api.FieldGroups, func(i api.ClientInfo) bool {
			return i.Session != nil && i.Groups != nil && i.UID == nil && i.System == nil
		}},
		{api.FieldSystem, func(i api.ClientInfo) bool {
			return i.System != nil && i.System.Protocol == "ws" && i.RemoteIP == "" && i.Groups == nil
		}},
	} {
		info, err := c.GetClientInfo(ctx, id, tc.fields)
		if err != nil || !tc.check(info) {
			t.Errorf("GetClientInfo(%d) = %+v, %v", tc.fields, info, err)
		}
	}
	// Empty session and groups are non-nil when asked for.
	if err := c.DeleteSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.UnbindUID(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.LeaveGroup(ctx, id, "room1"); err != nil {
		t.Fatal(err)
	}
	info, err = c.GetClientInfo(ctx, id, api.FieldSession|api.FieldGroups|api.FieldUID)
	if err != nil || info.Session == nil || len(info.Session) != 0 || info.Groups == nil || len(info.Groups) != 0 ||
		info.UID == nil || *info.UID != "" {
		t.Fatalf("empty GetClientInfo = %+v, %v", info, err)
	}

	if err := c.CloseClient(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if seen := g.seen(); len(seen) != 1 || seen[0].Op != bus.OpCloseClient || !seen[0].Flag {
		t.Fatalf("close command = %+v", seen)
	}
	// Now the client is gone: not_found everywhere, IsOnline false.
	if on, err := c.IsOnline(ctx, id); err != nil || on {
		t.Fatalf("IsOnline(closed) = %v, %v", on, err)
	}
	for _, call := range clientCalls[1:13] {
		if call.name == "IsOnline" {
			continue
		}
		err := call.call(ctx, c, id)
		var ge *api.GatewayError
		if !errors.Is(err, api.ErrNotFound) || !errors.As(err, &ge) || ge.Code != bus.ErrCodeNotFound || ge.Gateway != gw1 {
			t.Errorf("%s(closed) = %v, want not_found GatewayError", call.name, err)
		}
	}
}

func TestClientOpErrorCodes(t *testing.T) {
	b := newTestBus(t)
	g := startFakeGW(t, b, gw1)
	c := b.client(t, api.Config{})
	ctx := context.Background()
	id := g.add("")
	for _, tc := range []struct {
		code string
		want error
	}{
		{bus.ErrCodeNotFound, api.ErrNotFound},
		{bus.ErrCodeInvalidClient, api.ErrInvalidClient},
		{bus.ErrCodeInvalidRequest, api.ErrInvalidArgument},
		{bus.ErrCodeInternal, nil},
		{"something_new", nil},
	} {
		g.set(func(g *fakeGW) { g.cmdCode = tc.code })
		err := c.BindUID(ctx, id, "u")
		var ge *api.GatewayError
		if !errors.As(err, &ge) || ge.Code != tc.code || ge.Message != "injected" || ge.Client != id || ge.Op != "bindUid" {
			t.Errorf("code %s: err = %v", tc.code, err)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("code %s: %v is not %v", tc.code, err, tc.want)
		}
		if tc.want == nil && (errors.Is(err, api.ErrNotFound) || errors.Is(err, api.ErrInvalidArgument)) {
			t.Errorf("code %s: %v maps to a sentinel", tc.code, err)
		}
		if !strings.Contains(err.Error(), tc.code) || !strings.Contains(err.Error(), id) {
			t.Errorf("code %s: message %q", tc.code, err)
		}
	}
}

func TestGatewayGone(t *testing.T) {
	b := newTestBus(t)
	c := b.client(t, api.Config{})
	ctx := context.Background()
	id := clientid.Make(gw2, 7) // nobody serves gw2
	if on, err := c.IsOnline(ctx, id); err != nil || on {
		t.Fatalf("IsOnline = %v, %v; want false, nil", on, err)
	}
	for _, call := range clientCalls[2:13] {
		if err := call.call(ctx, c, id); !errors.Is(err, api.ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", call.name, err)
		}
	}
	// A send to a gone gateway is silently skipped, a large one too
	// (which waits for an answer).
	for _, n := range []int{1, api.CheckedSendSize + 1} {
		if err := c.SendToClient(ctx, id, make([]byte, n)); err != nil {
			t.Fatalf("SendToClient of %d bytes = %v", n, err)
		}
	}
}

// TestSendToClientChecked: a send over CheckedSendSize waits for the
// gateway's answer and returns its refusal (a UDP client cannot take the
// message); a smaller one is published without waiting.
func TestSendToClientChecked(t *testing.T) {
	b := newTestBus(t)
	g := startFakeGW(t, b, gw1)
	c := b.client(t, api.Config{})
	ctx := context.Background()
	id := g.add("")
	g.set(func(g *fakeGW) { g.cmdCode = bus.ErrCodeInvalidRequest })
	if err := c.SendToClient(ctx, id, make([]byte, api.CheckedSendSize)); err != nil {
		t.Fatalf("a send of CheckedSendSize bytes = %v, want nil (not waited for)", err)
	}
	err := c.SendToClient(ctx, id, make([]byte, api.CheckedSendSize+1))
	var ge *api.GatewayError
	if !errors.Is(err, api.ErrInvalidArgument) || !errors.As(err, &ge) || ge.Op != "sendToClient" {
		t.Fatalf("a larger send refused by the gateway = %v, want its invalid_request", err)
	}
}

func TestRequestTimeout(t *testing.T) {
	b := newTestBus(t)
	g := startFakeGW(t, b, gw1)
	g.set(func(g *fakeGW) { g.ignoreCmd = true })
	id := g.add("")
	c := b.client(t, api.Config{RequestTimeout: 100 * time.Millisecond})

	start := time.Now()
	if err := c.BindUID(context.Background(), id, "u"); !errors.Is(err, api.ErrTimeout) {
		t.Fatalf("BindUID = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("took %v, want about 100ms", d)
	}
	// An earlier context deadline wins, and is a timeout too.
	c2 := b.client(t, api.Config{RequestTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := c2.IsOnline(ctx, id)
	if !errors.Is(err, api.ErrTimeout) {
		t.Fatalf("IsOnline = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	// A canceled context is the caller's error, not a timeout.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c2.GetSession(ctx, id); !errors.Is(err, context.Canceled) || errors.Is(err, api.ErrTimeout) {
		t.Fatalf("GetSession(canceled) = %v", err)
	}
}

func TestSends(t *testing.T) {
	b := newTestBus(t)
	g1 := startFakeGW(t, b, gw1)
	g2 := startFakeGW(t, b, gw2)
	c := b.client(t, api.Config{})
	ctx := context.Background()
	a, other := g1.add("u1"), g2.add("u2")

	msg := []byte("hello\x00\xff binary")
	if err := c.SendToClient(ctx, a, msg); err != nil {
		t.Fatal(err)
	}
	msg[0] = 'J' // the caller may reuse msg at once
	if err := c.SendToUID(ctx, []string{"u1", "u2"}, []byte("to uids"), other); err != nil {
		t.Fatal(err)
	}
	if err := c.SendToGroup(ctx, []string{"g1", "g2"}, []byte("to groups")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendToAll(ctx, []byte("to all"), a, other); err != nil {
		t.Fatal(err)
	}
	if err := c.UnGroup(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	// Both fakes subscribe to every uid and group subject: sends to two
	// names arrive twice, with the same MsgID.
	waitFor(t, 5*time.Second, "commands", func() bool { return len(g1.seen()) == 7 && len(g2.seen()) == 6 })

	// The fake's Cmd and Broadcast subscriptions run on different
	// goroutines: find each command by its op.
	byOp := map[bus.Op]bus.Command{}
	ids := map[bus.Op]map[uint64]int{}
	for _, cmd := range g1.seen() {
		byOp[cmd.Op] = cmd
		if ids[cmd.Op] == nil {
			ids[cmd.Op] = map[uint64]int{}
		}
		ids[cmd.Op][cmd.MsgID]++
	}
	for _, op := range []bus.Op{bus.OpSendToUID, bus.OpSendToGroup} {
		if len(ids[op]) != 1 || ids[op][0] != 0 || byOp[op].MsgID == 0 {
			t.Errorf("%s: copies by MsgID = %v, want two copies of one non-zero id", op, ids[op])
		}
	}
	subj := bus.Subjects{Prefix: bus.DefaultPrefix}
	wantRouted := []string{subj.UID("u1"), subj.UID("u2"), subj.Group("g1"), subj.Group("g2"), subj.Broadcast(), subj.Group("g1")}
	got := g2.seenRouted() // one goroutine per subscription: order not kept
	slices.Sort(got)
	slices.Sort(wantRouted)
	if !slices.Equal(got, wantRouted) {
		t.Errorf("subjects = %q, want %q", got, wantRouted)
	}
	if cmd := byOp[bus.OpSendToClient]; len(cmd.Clients) != 1 || cmd.Clients[0] != a ||
		string(cmd.Data) != "hello\x00\xff binary" || cmd.Version != bus.Version {
		t.Errorf("SendToClient cmd = %+v", cmd)
	}
	if cmd := byOp[bus.OpSendToUID]; strings.Join(cmd.UIDs, ",") != "u1,u2" || strings.Join(cmd.Without, ",") != other {
		t.Errorf("SendToUID cmd = %+v", cmd)
	}
	if cmd := byOp[bus.OpSendToGroup]; strings.Join(cmd.Groups, ",") != "g1,g2" || string(cmd.Data) != "to groups" {
		t.Errorf("SendToGroup cmd = %+v", cmd)
	}
	if cmd := byOp[bus.OpSendToAll]; len(cmd.Without) != 2 || string(cmd.Data) != "to all" {
		t.Errorf("SendToAll cmd = %+v", cmd)
	}
	if cmd := byOp[bus.OpUngroup]; cmd.Arg != "g1" || strings.Join(cmd.Groups, ",") != "g1" {
		t.Errorf("UnGroup cmd = %+v", cmd)
	}
	for _, cmd := range g2.seen() {
		if cmd.Op == bus.OpSendToClient {
			t.Errorf("gateway 2 got a send for a client of gateway 1")
		}
	}
}

func TestClose(t *testing.T) {
	b := newTestBus(t)
	g := startFakeGW(t, b, gw1)
	g.set(func(g *fakeGW) { g.mode, g.ignoreCmd = ignoreQueries, true })
	id := g.add("")

	// A borrowed connection stays open after Close.
	nc := b.conn(t, "borrowed")
	c, err := api.New(nc, api.Config{QueryTimeout: time.Minute, RequestTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	announce(t, c, g)
	ctx := context.Background()
	errs := make(chan error, 2)
	go func() { _, err := c.GetClientCount(ctx); errs <- err }()
	go func() { _, err := c.IsOnline(ctx, id); errs <- err }()
	waitFor(t, 5*time.Second, "query in flight", func() bool { return len(g.seenQueries()) == 1 })
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, api.ErrClosed) {
			t.Errorf("call in flight = %v, want ErrClosed", err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("close released calls after %v", d)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	for _, call := range clientCalls {
		if err := call.call(ctx, c, id); !errors.Is(err, api.ErrClosed) {
			t.Errorf("%s after Close = %v", call.name, err)
		}
	}
	if _, err := c.GetUIDList(ctx, true, api.PageRequest{}); !errors.Is(err, api.ErrClosed) {
		t.Errorf("GetUIDList after Close = %v", err)
	}
	if nc.IsClosed() {
		t.Fatal("borrowed connection closed")
	}

	// Dial owns its connection.
	d, err := api.Dial(b.e.ConnectOptions("owned"), api.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewErrors(t *testing.T) {
	b := newTestBus(t)
	nc := b.conn(t, "x")
	for _, tc := range []struct {
		name string
		nc   *nats.Conn
		cfg  api.Config
	}{
		{"nil conn", nil, api.Config{}},
		{"bad prefix", nc, api.Config{Prefix: "a..b"}},
		{"negative query timeout", nc, api.Config{QueryTimeout: -1}},
		{"negative request timeout", nc, api.Config{RequestTimeout: -1}},
	} {
		if c, err := api.New(tc.nc, tc.cfg); err == nil {
			c.Close()
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := api.Dial(bus.Options{}, api.Config{}); err == nil {
		t.Error("Dial without URL: no error")
	}
}

// benchClient returns a Client on an embedded bus. With sink, a
// gateway-like subscriber drains Cmd and Broadcast so that publishes are
// delivered (its allocations and the server's count in allocs/op); without,
// the server drops them and allocs/op is the client's own cost.
func benchClient(b *testing.B, sink bool) *api.Client {
	tb := newTestBus(b)
	if sink {
		nc := tb.conn(b, "sink")
		for _, s := range []string{"gw.bcast", "gw.gw.*.cmd", "gw.grp.>", "gw.uid.>"} {
			sub, err := nc.Subscribe(s, func(*nats.Msg) {})
			if err != nil {
				b.Fatal(err)
			}
			sub.SetPendingLimits(-1, -1)
		}
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	return tb.client(b, api.Config{})
}

func BenchmarkSendToClient(b *testing.B) {
	for _, sink := range []bool{false, true} {
		b.Run(map[bool]string{false: "no-interest", true: "delivered"}[sink], func(b *testing.B) {
			c := benchClient(b, sink)
			ctx := context.Background()
			id := clientid.Make(gw1, 42)
			msg := []byte(`{"type":"chat","text":"hello, world"}`)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if err := c.SendToClient(ctx, id, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSendToGroup(b *testing.B) {
	for _, sink := range []bool{false, true} {
		b.Run(map[bool]string{false: "no-interest", true: "delivered"}[sink], func(b *testing.B) {
			c := benchClient(b, sink)
			ctx := context.Background()
			groups := []string{"room-1"}
			without := []string{clientid.Make(gw1, 42)}
			msg := []byte(`{"type":"chat","text":"hello, world"}`)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if err := c.SendToGroup(ctx, groups, msg, without...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Dial a bus, send to a group, and count who is online.
func ExampleDial() {
	c, err := api.Dial(bus.Options{URL: "nats://127.0.0.1:4222"}, api.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.SendToGroup(ctx, []string{"room-1"}, []byte("hello")); err != nil {
		fmt.Println(err)
	}
	n, err := c.GetClientCount(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	if n.Partial {
		fmt.Println("gateways that did not answer:", n.Missing)
	}
	fmt.Println("online:", n.Value)
}

// TestSendRouting checks where sends to uids and groups are published: one
// distinct name on its subject, up to bus.MaxRoutedNames on each name's
// subject, each with one MsgID; more on the broadcast subject once, with
// none.
func TestSendRouting(t *testing.T) {
	b := newTestBus(t)
	g := startFakeGW(t, b, gw1)
	c := b.client(t, api.Config{})
	ctx := context.Background()
	subj := bus.Subjects{Prefix: bus.DefaultPrefix}
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("n%d", i)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		send   func() error
		want   []string
		withID bool
	}{
		{"one group", func() error { return c.SendToGroup(ctx, []string{"room"}, nil) }, []string{subj.Group("room")}, true},
		{"repeated uid", func() error { return c.SendToUID(ctx, []string{"u", "u", "u"}, nil) }, []string{subj.UID("u")}, true},
		{"max groups", func() error { return c.SendToGroup(ctx, names(bus.MaxRoutedNames), nil) }, func() []string {
			var out []string
			for _, n := range names(bus.MaxRoutedNames) {
				out = append(out, subj.Group(n))
			}
			return out
		}(), true},
		{"too many uids", func() error { return c.SendToUID(ctx, names(bus.MaxRoutedNames+1), nil) }, []string{subj.Broadcast()}, false},
		{"long group", func() error { return c.SendToGroup(ctx, []string{strings.Repeat("é", 100)}, nil) }, []string{subj.Group(strings.Repeat("é", 100))}, true},
		{"ungroup", func() error { return c.UnGroup(ctx, "a.b*>") }, []string{subj.Group("a.b*>")}, false},
	} {
		before := len(g.seen())
		if err := tc.send(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		waitFor(t, 5*time.Second, tc.name, func() bool { return len(g.seen()) >= before+len(tc.want) })
		if err := b.conn(t, "sync").Flush(); err != nil { // nothing more in flight
			t.Fatal(err)
		}
		cmds, got := g.seen()[before:], g.seenRouted()[before:]
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: subjects %q, want %q", tc.name, got, want)
		}
		for _, cmd := range cmds {
			if (cmd.MsgID != 0) != tc.withID || cmd.MsgID != cmds[0].MsgID {
				t.Errorf("%s: MsgID %d (first %d), want one id: %v", tc.name, cmd.MsgID, cmds[0].MsgID, tc.withID)
			}
		}
	}
}
