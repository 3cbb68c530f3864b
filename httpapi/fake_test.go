package httpapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/gatework/gatework/api"
)

// call is one recorded call of fakeAPI: the api.API method name and its
// arguments after ctx (variadic ones as a slice).
type call struct {
	Method string
	Args   []any
}

// fakeAPI is an api.API that records every call and answers canned values,
// or err when set. With block it waits for the context to end instead.
type fakeAPI struct {
	mu          sync.Mutex
	calls       []call
	deadline    time.Time // of the last call's context
	hasDeadline bool

	err      error // returned by every method when non-nil
	block    bool  // wait for ctx.Done and return ctx.Err()
	panicMsg any   // panic with this when non-nil
	discard  bool  // do not record calls (fuzzing)
	// taskDelay: TaskWait takes this long (or until its context ends,
	// then it returns the context's error).
	taskDelay time.Duration
}

var _ api.API = (*fakeAPI)(nil)

func (f *fakeAPI) record(ctx context.Context, method string, args ...any) error {
	f.mu.Lock()
	if !f.discard {
		f.calls = append(f.calls, call{Method: method, Args: args})
		f.deadline, f.hasDeadline = ctx.Deadline()
	}
	block, err, p := f.block, f.err, f.panicMsg
	f.mu.Unlock()
	if p != nil {
		panic(p)
	}
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// last is the last recorded call.
func (f *fakeAPI) last() (call, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return call{}, false
	}
	return f.calls[len(f.calls)-1], true
}

func (f *fakeAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// Canned answers.
var (
	cannedCoverage = api.Coverage{Partial: true, Missing: []string{"gw2"}}
	cannedPage     = api.Page{Items: []string{"a", "b"}, NextCursor: "b"}
	cannedUID      = "u1"
	cannedInfo     = api.ClientInfo{
		RemoteIP:   "10.0.0.1",
		RemotePort: 4242,
		UID:        &cannedUID,
		Session:    api.Session{"k": "v"},
		Groups:     []string{"g1"},
		System: &api.SystemInfo{
			Listener: "ws", Protocol: "websocket", Gateway: "gw1",
			ConnectedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			LastActive:  time.Date(2025, 1, 2, 3, 4, 6, 0, time.UTC),
			BytesIn:     1, BytesOut: 2, MessagesIn: 3, MessagesOut: 4,
		},
	}
)

func (f *fakeAPI) SendToClient(ctx context.Context, client string, msg []byte) error {
	return f.record(ctx, "SendToClient", client, clone(msg))
}

func (f *fakeAPI) SendToUID(ctx context.Context, uids []string, msg []byte, without ...string) error {
	return f.record(ctx, "SendToUID", uids, clone(msg), without)
}

func (f *fakeAPI) SendToGroup(ctx context.Context, groups []string, msg []byte, without ...string) error {
	return f.record(ctx, "SendToGroup", groups, clone(msg), without)
}

func (f *fakeAPI) SendToAll(ctx context.Context, msg []byte, without ...string) error {
	return f.record(ctx, "SendToAll", clone(msg), without)
}

func (f *fakeAPI) IsOnline(ctx context.Context, client string) (bool, error) {
	return true, f.record(ctx, "IsOnline", client)
}

func (f *fakeAPI) IsUIDOnline(ctx context.Context, uid string) (api.Bool, error) {
	return api.Bool{Value: true, Coverage: cannedCoverage}, f.record(ctx, "IsUIDOnline", uid)
}

func (f *fakeAPI) GetClientCount(ctx context.Context) (api.Count, error) {
	return api.Count{Value: 12}, f.record(ctx, "GetClientCount")
}

func (f *fakeAPI) GetClientCountByGroup(ctx context.Context, group string) (api.Count, error) {
	return api.Count{Value: 3, Coverage: cannedCoverage}, f.record(ctx, "GetClientCountByGroup", group)
}

func (f *fakeAPI) GetClientList(ctx context.Context, page api.PageRequest) (api.Page, error) {
	return cannedPage, f.record(ctx, "GetClientList", page)
}

func (f *fakeAPI) GetClientListByGroup(ctx context.Context, group string, page api.PageRequest) (api.Page, error) {
	return cannedPage, f.record(ctx, "GetClientListByGroup", group, page)
}

func (f *fakeAPI) GetClientListByUID(ctx context.Context, uid string, page api.PageRequest) (api.Page, error) {
	return api.Page{}, f.record(ctx, "GetClientListByUID", uid, page)
}

func (f *fakeAPI) GetClientInfo(ctx context.Context, client string, fields api.Fields) (api.ClientInfo, error) {
	return cannedInfo, f.record(ctx, "GetClientInfo", client, fields)
}

func (f *fakeAPI) GetUIDList(ctx context.Context, unique bool, page api.PageRequest) (api.Page, error) {
	p := cannedPage
	p.Coverage = cannedCoverage
	return p, f.record(ctx, "GetUIDList", unique, page)
}

func (f *fakeAPI) GetUIDListByGroup(ctx context.Context, group string, unique bool, page api.PageRequest) (api.Page, error) {
	return cannedPage, f.record(ctx, "GetUIDListByGroup", group, unique, page)
}

func (f *fakeAPI) GetUIDCount(ctx context.Context, uniquePercent float64) (api.Count, error) {
	return api.Count{Value: 7}, f.record(ctx, "GetUIDCount", uniquePercent)
}

func (f *fakeAPI) GetUIDCountByGroup(ctx context.Context, group string) (api.Count, error) {
	return api.Count{Value: 2}, f.record(ctx, "GetUIDCountByGroup", group)
}

func (f *fakeAPI) GetGroupList(ctx context.Context, unique bool, page api.PageRequest) (api.Page, error) {
	return cannedPage, f.record(ctx, "GetGroupList", unique, page)
}

func (f *fakeAPI) GetClientSessionsByGroup(ctx context.Context, group string) (api.ClientSessions, error) {
	cs := api.ClientSessions{Sessions: map[string]api.Session{"c1": {"k": "v"}, "c2": nil}}
	return cs, f.record(ctx, "GetClientSessionsByGroup", group)
}

func (f *fakeAPI) CloseClient(ctx context.Context, client string, force bool) error {
	return f.record(ctx, "CloseClient", client, force)
}

func (f *fakeAPI) CloseClientWith(ctx context.Context, client string, force bool, msg []byte) error {
	return f.record(ctx, "CloseClientWith", client, force, string(msg))
}

func (f *fakeAPI) SendToClients(ctx context.Context, clients []string, msg []byte) error {
	return f.record(ctx, "SendToClients", clients, msg)
}

func (f *fakeAPI) IsUIDsOnline(ctx context.Context, uids []string) (api.Bools, error) {
	v := map[string]bool{}
	for i, u := range uids {
		v[u] = i%2 == 0
	}
	return api.Bools{Values: v}, f.record(ctx, "IsUIDsOnline", uids)
}

func (f *fakeAPI) GetClientCountByGroups(ctx context.Context, groups []string) (api.Counts, error) {
	v := map[string]int{}
	for i, g := range groups {
		v[g] = i
	}
	return api.Counts{Values: v}, f.record(ctx, "GetClientCountByGroups", groups)
}

func (f *fakeAPI) GetClientListByUIDs(ctx context.Context, uids []string) (api.ClientLists, error) {
	v := map[string][]string{}
	for i, u := range uids {
		v[u] = []string{}
		if i == 0 {
			v[u] = []string{"c1", "c2"}
		}
	}
	return api.ClientLists{Values: v}, f.record(ctx, "GetClientListByUIDs", uids)
}

func (f *fakeAPI) CloseUID(ctx context.Context, uid string, force bool, msg []byte) error {
	return f.record(ctx, "CloseUID", uid, force, string(msg))
}

func (f *fakeAPI) BindUID(ctx context.Context, client, uid string) error {
	return f.record(ctx, "BindUID", client, uid)
}

func (f *fakeAPI) UnbindUID(ctx context.Context, client string) error {
	return f.record(ctx, "UnbindUID", client)
}

func (f *fakeAPI) JoinGroup(ctx context.Context, client, group string) error {
	return f.record(ctx, "JoinGroup", client, group)
}

func (f *fakeAPI) LeaveGroup(ctx context.Context, client, group string) error {
	return f.record(ctx, "LeaveGroup", client, group)
}

func (f *fakeAPI) UnGroup(ctx context.Context, group string) error {
	return f.record(ctx, "UnGroup", group)
}

func (f *fakeAPI) SetSession(ctx context.Context, client string, s api.Session) error {
	return f.record(ctx, "SetSession", client, s)
}

func (f *fakeAPI) UpdateSession(ctx context.Context, client string, s api.Session) error {
	return f.record(ctx, "UpdateSession", client, s)
}

func (f *fakeAPI) DeleteSession(ctx context.Context, client string) error {
	return f.record(ctx, "DeleteSession", client)
}

func (f *fakeAPI) GetSession(ctx context.Context, client string) (api.Session, error) {
	return api.Session{"k": "v", "n": 1}, f.record(ctx, "GetSession", client)
}

func (f *fakeAPI) Protect(ctx context.Context, client string, on bool) error {
	return f.record(ctx, "Protect", client, on)
}

func (f *fakeAPI) PauseRecv(ctx context.Context, client string) error {
	return f.record(ctx, "PauseRecv", client)
}

func (f *fakeAPI) ResumeRecv(ctx context.Context, client string) error {
	return f.record(ctx, "ResumeRecv", client)
}

func (f *fakeAPI) Confirm(ctx context.Context, client string) error {
	return f.record(ctx, "Confirm", client)
}

func (f *fakeAPI) SetBinary(ctx context.Context, client string, on bool) error {
	return f.record(ctx, "SetBinary", client, on)
}

func (f *fakeAPI) GetStats(ctx context.Context) (api.Stats, error) {
	return api.Stats{
		TimeUnixMs: 1000,
		Totals:     api.StatsTotals{Gateways: 1, Workers: 1, Connections: 2, MessagesIn: 5, WorkersIdle: 1, Processes: 1},
		Gateways: []api.GatewayStats{{Gateway: "gw1", PID: 7, Connections: 2, MessagesIn: 5, Dispatch: "uid",
			Workers:   []api.WorkerStats{{ID: "w1", Events: 3, State: "idle"}},
			Processes: []api.ProcessStats{{Name: "p1", PID: 8, Ready: true, Restarts: 1}}}},
		Workers:   []api.WorkerStats{{ID: "w1", Events: 3, State: "idle"}},
		Processes: []api.ProcessStats{{Gateway: "gw1", Name: "p1", PID: 8, Ready: true, Restarts: 1}},
		Coverage:  cannedCoverage,
	}, f.record(ctx, "GetStats")
}

// SubmitTask records the call and returns a fixed id.
func (f *fakeAPI) SubmitTask(ctx context.Context, payload []byte, timeout time.Duration, _ func(api.TaskResult)) (api.TaskID, error) {
	return "t.1", f.record(ctx, "SubmitTask", clone(payload), timeout)
}

// TaskWait records the call; payload "fail" gets a handler error, any
// other its own bytes reversed.
func (f *fakeAPI) TaskWait(ctx context.Context, payload []byte, timeout time.Duration) ([]byte, error) {
	if err := f.record(ctx, "TaskWait", clone(payload), timeout); err != nil {
		return nil, err
	}
	if f.taskDelay > 0 {
		select {
		case <-time.After(f.taskDelay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if string(payload) == "fail" {
		return nil, &api.TaskError{Task: "t.1", Worker: "w1", Message: "it failed"}
	}
	out := clone(payload)
	slices.Reverse(out)
	return out, nil
}

// clone copies msg: the API contract lets the caller reuse it after the call.
func clone(msg []byte) []byte {
	if msg == nil {
		return nil
	}
	return append([]byte{}, msg...)
}

func (f *fakeAPI) GetAllClientSessions(ctx context.Context, page api.PageRequest) (api.SessionPage, error) {
	return api.SessionPage{Sessions: map[string]api.Session{"c1": {"k": "v"}, "c2": nil}, NextCursor: "c2", Coverage: cannedCoverage},
		f.record(ctx, "GetAllClientSessions", page)
}

func (f *fakeAPI) GetAllGroupClientIDCount(ctx context.Context) (api.GroupCounts, error) {
	return api.GroupCounts{Values: map[string]int{"g1": 2}}, f.record(ctx, "GetAllGroupClientIDCount")
}

func (f *fakeAPI) GetAllGroupUIDCount(ctx context.Context) (api.GroupCounts, error) {
	return api.GroupCounts{Values: map[string]int{"g1": 1}, Truncated: true}, f.record(ctx, "GetAllGroupUIDCount")
}

func (f *fakeAPI) GetAllGroupClientIDList(ctx context.Context, page api.PageRequest) (api.GroupLists, error) {
	return api.GroupLists{Values: map[string][]string{"g1": {"c1", "c2"}}}, f.record(ctx, "GetAllGroupClientIDList", page)
}

func (f *fakeAPI) SendValue(ctx context.Context, to api.Target, v any) error {
	if raw, ok := v.(json.RawMessage); ok {
		v = string(raw)
	}
	return f.record(ctx, "SendValue", to, v)
}

// OnListeners records the scope and answers with f itself, so the call
// that follows is recorded next.
func (f *fakeAPI) OnListeners(names ...string) api.API {
	_ = f.record(context.Background(), "OnListeners", names)
	return f
}
