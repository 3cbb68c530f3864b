package worker

import (
	"context"
	"sync"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// flushTimeout bounds the wait for the gateway to confirm the actions a
// handler queued before an API call.
const flushTimeout = api.DefaultRequestTimeout

// orderedAPI is the API a handler gets from Context.API: the worker's,
// with every call preceded, while the batch is in hand, by a flush of the
// actions the handler queued so far. So the gateway applies the handler's
// actions and its API calls in the order it made them: the flush is a
// progress Ack carrying the actions, which the gateway applies before it
// answers, and what the worker publishes afterwards (the call, then the
// rest of the actions in the final Ack) the gateway executes in the order
// it was published (see docs/bus-protocol.md). It is safe for concurrent
// use and may be kept after the handler returned: then it is the worker's
// API.
type orderedAPI struct {
	inner api.API
	w     *Worker
	mu    sync.Mutex // guards j and, while j is set, j.actions and j.flushed
	j     *job       // nil once the batch's final Ack is built
	// root is, in a listener-scoped view (OnListeners), the Context's
	// orderedAPI, whose mu and j the view uses; nil in that one.
	root *orderedAPI
}

var _ api.API = (*orderedAPI)(nil)

// flush sends the actions queued since the last flush as a progress Ack
// and waits until the gateway answers that it applied them (within
// flushTimeout, whatever ctx says: the actions are the handler's, made
// before the call). A failure is logged and the call goes on: the actions
// may or may not have been applied, and are not sent again.
func (o *orderedAPI) flush() {
	if o.root != nil {
		o = o.root
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	j := o.j
	if j == nil || j.flushed == len(j.actions) || o.w.nc == nil {
		return
	}
	pending := j.actions[j.flushed:]
	j.flushed = len(j.actions)
	b := j.appendAnswer(nil, &bus.Ack{Delivery: j.delivery, Progress: true, Actions: pending, Worker: o.w.cfg.ID})
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if _, err := o.w.nc.RequestWithContext(ctx, j.reply, b); err != nil {
		o.w.stats.ackErrors.Add(1)
		o.w.log.Warn("actions before an API call not confirmed by the gateway; the call goes on",
			"client", j.batch.Client, "delivery", j.delivery, "actions", len(pending), "err", err)
	}
}

// detach ends the flushes: the final Ack is being built.
func (o *orderedAPI) detach() {
	o.mu.Lock()
	o.j = nil
	o.mu.Unlock()
}

func (o *orderedAPI) SendToClient(ctx context.Context, client string, msg []byte) error {
	o.flush()
	return o.inner.SendToClient(ctx, client, msg)
}

func (o *orderedAPI) SendToUID(ctx context.Context, uids []string, msg []byte, without ...string) error {
	o.flush()
	return o.inner.SendToUID(ctx, uids, msg, without...)
}

func (o *orderedAPI) SendToGroup(ctx context.Context, groups []string, msg []byte, without ...string) error {
	o.flush()
	return o.inner.SendToGroup(ctx, groups, msg, without...)
}

func (o *orderedAPI) SendToAll(ctx context.Context, msg []byte, without ...string) error {
	o.flush()
	return o.inner.SendToAll(ctx, msg, without...)
}

func (o *orderedAPI) IsOnline(ctx context.Context, client string) (bool, error) {
	o.flush()
	return o.inner.IsOnline(ctx, client)
}

func (o *orderedAPI) IsUIDOnline(ctx context.Context, uid string) (api.Bool, error) {
	o.flush()
	return o.inner.IsUIDOnline(ctx, uid)
}

func (o *orderedAPI) GetClientCount(ctx context.Context) (api.Count, error) {
	o.flush()
	return o.inner.GetClientCount(ctx)
}

func (o *orderedAPI) GetClientCountByGroup(ctx context.Context, group string) (api.Count, error) {
	o.flush()
	return o.inner.GetClientCountByGroup(ctx, group)
}

func (o *orderedAPI) GetClientList(ctx context.Context, page api.PageRequest) (api.Page, error) {
	o.flush()
	return o.inner.GetClientList(ctx, page)
}

func (o *orderedAPI) GetClientListByGroup(ctx context.Context, group string, page api.PageRequest) (api.Page, error) {
	o.flush()
	return o.inner.GetClientListByGroup(ctx, group, page)
}

func (o *orderedAPI) GetClientListByUID(ctx context.Context, uid string, page api.PageRequest) (api.Page, error) {
	o.flush()
	return o.inner.GetClientListByUID(ctx, uid, page)
}

func (o *orderedAPI) GetClientInfo(ctx context.Context, client string, fields api.Fields) (api.ClientInfo, error) {
	o.flush()
	return o.inner.GetClientInfo(ctx, client, fields)
}

func (o *orderedAPI) GetUIDList(ctx context.Context, unique bool, page api.PageRequest) (api.Page, error) {
	o.flush()
	return o.inner.GetUIDList(ctx, unique, page)
}

func (o *orderedAPI) GetUIDListByGroup(ctx context.Context, group string, unique bool, page api.PageRequest) (api.Page, error) {
	o.flush()
	return o.inner.GetUIDListByGroup(ctx, group, unique, page)
}

func (o *orderedAPI) GetUIDCount(ctx context.Context, uniquePercent float64) (api.Count, error) {
	o.flush()
	return o.inner.GetUIDCount(ctx, uniquePercent)
}

func (o *orderedAPI) GetUIDCountByGroup(ctx context.Context, group string) (api.Count, error) {
	o.flush()
	return o.inner.GetUIDCountByGroup(ctx, group)
}

func (o *orderedAPI) GetGroupList(ctx context.Context, unique bool, page api.PageRequest) (api.Page, error) {
	o.flush()
	return o.inner.GetGroupList(ctx, unique, page)
}

func (o *orderedAPI) GetClientSessionsByGroup(ctx context.Context, group string) (api.ClientSessions, error) {
	o.flush()
	return o.inner.GetClientSessionsByGroup(ctx, group)
}

func (o *orderedAPI) CloseClient(ctx context.Context, client string, force bool) error {
	o.flush()
	return o.inner.CloseClient(ctx, client, force)
}

func (o *orderedAPI) CloseClientWith(ctx context.Context, client string, force bool, msg []byte) error {
	o.flush()
	return o.inner.CloseClientWith(ctx, client, force, msg)
}

func (o *orderedAPI) CloseUID(ctx context.Context, uid string, force bool, msg []byte) error {
	o.flush()
	return o.inner.CloseUID(ctx, uid, force, msg)
}

func (o *orderedAPI) SendToClients(ctx context.Context, clients []string, msg []byte) error {
	o.flush()
	return o.inner.SendToClients(ctx, clients, msg)
}

func (o *orderedAPI) IsUIDsOnline(ctx context.Context, uids []string) (api.Bools, error) {
	o.flush()
	return o.inner.IsUIDsOnline(ctx, uids)
}

func (o *orderedAPI) GetClientCountByGroups(ctx context.Context, groups []string) (api.Counts, error) {
	o.flush()
	return o.inner.GetClientCountByGroups(ctx, groups)
}

func (o *orderedAPI) GetClientListByUIDs(ctx context.Context, uids []string) (api.ClientLists, error) {
	o.flush()
	return o.inner.GetClientListByUIDs(ctx, uids)
}

func (o *orderedAPI) BindUID(ctx context.Context, client, uid string) error {
	o.flush()
	return o.inner.BindUID(ctx, client, uid)
}

func (o *orderedAPI) UnbindUID(ctx context.Context, client string) error {
	o.flush()
	return o.inner.UnbindUID(ctx, client)
}

func (o *orderedAPI) JoinGroup(ctx context.Context, client, group string) error {
	o.flush()
	return o.inner.JoinGroup(ctx, client, group)
}

func (o *orderedAPI) LeaveGroup(ctx context.Context, client, group string) error {
	o.flush()
	return o.inner.LeaveGroup(ctx, client, group)
}

func (o *orderedAPI) UnGroup(ctx context.Context, group string) error {
	o.flush()
	return o.inner.UnGroup(ctx, group)
}

func (o *orderedAPI) SetSession(ctx context.Context, client string, s api.Session) error {
	o.flush()
	return o.inner.SetSession(ctx, client, s)
}

func (o *orderedAPI) UpdateSession(ctx context.Context, client string, s api.Session) error {
	o.flush()
	return o.inner.UpdateSession(ctx, client, s)
}

func (o *orderedAPI) DeleteSession(ctx context.Context, client string) error {
	o.flush()
	return o.inner.DeleteSession(ctx, client)
}

func (o *orderedAPI) GetSession(ctx context.Context, client string) (api.Session, error) {
	o.flush()
	return o.inner.GetSession(ctx, client)
}

func (o *orderedAPI) Protect(ctx context.Context, client string, on bool) error {
	o.flush()
	return o.inner.Protect(ctx, client, on)
}

func (o *orderedAPI) PauseRecv(ctx context.Context, client string) error {
	o.flush()
	return o.inner.PauseRecv(ctx, client)
}

func (o *orderedAPI) ResumeRecv(ctx context.Context, client string) error {
	o.flush()
	return o.inner.ResumeRecv(ctx, client)
}

func (o *orderedAPI) Confirm(ctx context.Context, client string) error {
	o.flush()
	return o.inner.Confirm(ctx, client)
}

func (o *orderedAPI) SetBinary(ctx context.Context, client string, on bool) error {
	o.flush()
	return o.inner.SetBinary(ctx, client, on)
}

func (o *orderedAPI) GetAllClientSessions(ctx context.Context, page api.PageRequest) (api.SessionPage, error) {
	o.flush()
	return o.inner.GetAllClientSessions(ctx, page)
}

func (o *orderedAPI) GetAllGroupClientIDCount(ctx context.Context) (api.GroupCounts, error) {
	o.flush()
	return o.inner.GetAllGroupClientIDCount(ctx)
}

func (o *orderedAPI) GetAllGroupUIDCount(ctx context.Context) (api.GroupCounts, error) {
	o.flush()
	return o.inner.GetAllGroupUIDCount(ctx)
}

func (o *orderedAPI) GetAllGroupClientIDList(ctx context.Context, page api.PageRequest) (api.GroupLists, error) {
	o.flush()
	return o.inner.GetAllGroupClientIDList(ctx, page)
}

func (o *orderedAPI) SendValue(ctx context.Context, to api.Target, v any) error {
	o.flush()
	return o.inner.SendValue(ctx, to, v)
}

// OnListeners returns the listener-scoped view of the worker's API, its
// calls ordered with the handler's actions as this one's.
func (o *orderedAPI) OnListeners(names ...string) api.API {
	root := o
	if o.root != nil {
		root = o.root
	}
	return &orderedAPI{inner: o.inner.OnListeners(names...), w: o.w, root: root}
}
