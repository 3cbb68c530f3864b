package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/gatework/gatework/api"
)

// httpAPI implements api.API by calling the node's HTTP API
// (POST /api/<method>), so that one scenario runs against the Go client and
// against HTTP. Error answers become *apiError, which unwraps to the api
// sentinel of its code.
type httpAPI struct {
	c     *cluster
	token string
	// url is, when c is nil, the base URL of the HTTP API (an httptest
	// server in front of an api.Client).
	url string
	// scope is the listeners of OnListeners, sent as "listeners".
	scope []string
}

var _ api.API = httpAPI{}

// apiError is an HTTP API error answer.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("http %d %s: %s", e.Status, e.Code, e.Message)
}

func (e *apiError) Unwrap() error {
	switch e.Code {
	case "invalid_client":
		return api.ErrInvalidClient
	case "not_found":
		return api.ErrNotFound
	case "invalid_request":
		return api.ErrInvalidArgument
	case "timeout":
		return api.ErrTimeout
	case "unknown_listener":
		return api.ErrUnknownListener
	}
	return nil
}

// httpReply is the raw answer of one call.
type httpReply struct {
	Status int
	Header http.Header
	Body   []byte
}

// post sends body (raw bytes, or anything else encoded as JSON) to
// /api/<method> with the bearer token (none when token is "").
func (c *cluster) post(ctx context.Context, method, token string, body any) (httpReply, error) {
	return postURL(ctx, c.hc, "http://"+c.n.HTTPAddr().String()+"/api/"+method, token, body)
}

// postURL posts body (as cluster.post) to url.
func postURL(ctx context.Context, hc *http.Client, url, token string, body any) (httpReply, error) {
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return httpReply{}, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return httpReply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return httpReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return httpReply{}, err
	}
	return httpReply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// envelope is every answer's JSON shape.
type envelope struct {
	Result  json.RawMessage `json:"result"`
	Partial bool            `json:"partial"`
	Missing []string        `json:"missing"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// call posts params to method and decodes "result" into result (unless
// nil) and the coverage beside it into cov (unless nil).
func (h httpAPI) call(ctx context.Context, method string, params map[string]any, result any, cov *api.Coverage) error {
	if params == nil {
		params = map[string]any{}
	}
	if len(h.scope) > 0 {
		params["listeners"] = h.scope
	}
	var rep httpReply
	var err error
	if h.c != nil {
		rep, err = h.c.post(ctx, method, h.token, params)
	} else {
		rep, err = postURL(ctx, http.DefaultClient, h.url+"/api/"+method, h.token, params)
	}
	if err != nil {
		return err
	}
	var env envelope
	if err := json.Unmarshal(rep.Body, &env); err != nil {
		return fmt.Errorf("%s: http %d: body %q: %w", method, rep.Status, rep.Body, err)
	}
	if env.Error != nil || rep.Status != http.StatusOK {
		e := &apiError{Status: rep.Status}
		if env.Error != nil {
			e.Code, e.Message = env.Error.Code, env.Error.Message
		}
		return e
	}
	if cov != nil {
		cov.Partial, cov.Missing = env.Partial, env.Missing
		if len(cov.Missing) == 0 {
			cov.Missing = nil
		}
	}
	if result != nil {
		if err := json.Unmarshal(env.Result, result); err != nil {
			return fmt.Errorf("%s: result %s: %w", method, env.Result, err)
		}
	}
	return nil
}

func messageParams(p map[string]any, msg []byte) map[string]any {
	if utf8.Valid(msg) {
		p["message"] = string(msg)
	} else {
		p["message_base64"] = base64.StdEncoding.EncodeToString(msg)
	}
	return p
}

func withoutParam(p map[string]any, without []string) map[string]any {
	if len(without) > 0 {
		p["without"] = without
	}
	return p
}

type pageJSON struct {
	Items      []string `json:"items"`
	NextCursor string   `json:"next_cursor"`
	Partial    bool     `json:"partial"`
	Missing    []string `json:"missing"`
}

func (h httpAPI) page(ctx context.Context, method string, p map[string]any, pr api.PageRequest) (api.Page, error) {
	if pr.Cursor != "" {
		p["cursor"] = pr.Cursor
	}
	if pr.Limit != 0 {
		p["limit"] = pr.Limit
	}
	var pg pageJSON
	if err := h.call(ctx, method, p, &pg, nil); err != nil {
		return api.Page{}, err
	}
	out := api.Page{Items: pg.Items, NextCursor: pg.NextCursor, Coverage: api.Coverage{Partial: pg.Partial, Missing: pg.Missing}}
	if len(out.Missing) == 0 {
		out.Missing = nil
	}
	return out, nil
}

func (h httpAPI) count(ctx context.Context, method string, p map[string]any) (api.Count, error) {
	var c api.Count
	err := h.call(ctx, method, p, &c.Value, &c.Coverage)
	return c, err
}

func (h httpAPI) SendToClient(ctx context.Context, client string, msg []byte) error {
	return h.call(ctx, "sendToClient", messageParams(map[string]any{"client": client}, msg), nil, nil)
}

func (h httpAPI) SendToUID(ctx context.Context, uids []string, msg []byte, without ...string) error {
	return h.call(ctx, "sendToUid", withoutParam(messageParams(map[string]any{"uids": uids}, msg), without), nil, nil)
}

func (h httpAPI) SendToGroup(ctx context.Context, groups []string, msg []byte, without ...string) error {
	return h.call(ctx, "sendToGroup", withoutParam(messageParams(map[string]any{"groups": groups}, msg), without), nil, nil)
}

func (h httpAPI) SendToAll(ctx context.Context, msg []byte, without ...string) error {
	return h.call(ctx, "sendToAll", withoutParam(messageParams(map[string]any{}, msg), without), nil, nil)
}

func (h httpAPI) IsOnline(ctx context.Context, client string) (bool, error) {
	var ok bool
	err := h.call(ctx, "isOnline", map[string]any{"client": client}, &ok, nil)
	return ok, err
}

func (h httpAPI) IsUIDOnline(ctx context.Context, uid string) (api.Bool, error) {
	var b api.Bool
	err := h.call(ctx, "isUidOnline", map[string]any{"uid": uid}, &b.Value, &b.Coverage)
	return b, err
}

func (h httpAPI) GetClientCount(ctx context.Context) (api.Count, error) {
	return h.count(ctx, "getClientCount", nil)
}

func (h httpAPI) GetClientCountByGroup(ctx context.Context, group string) (api.Count, error) {
	return h.count(ctx, "getClientCountByGroup", map[string]any{"group": group})
}

func (h httpAPI) GetClientList(ctx context.Context, pr api.PageRequest) (api.Page, error) {
	return h.page(ctx, "getClientList", map[string]any{}, pr)
}

func (h httpAPI) GetClientListByGroup(ctx context.Context, group string, pr api.PageRequest) (api.Page, error) {
	return h.page(ctx, "getClientListByGroup", map[string]any{"group": group}, pr)
}

func (h httpAPI) GetClientListByUID(ctx context.Context, uid string, pr api.PageRequest) (api.Page, error) {
	return h.page(ctx, "getClientListByUid", map[string]any{"uid": uid}, pr)
}

func (h httpAPI) GetClientInfo(ctx context.Context, client string, fields api.Fields) (api.ClientInfo, error) {
	var info api.ClientInfo
	err := h.call(ctx, "getClientInfo", map[string]any{"client": client, "fields": int(fields)}, &info, nil)
	return info, err
}

func (h httpAPI) GetUIDList(ctx context.Context, unique bool, pr api.PageRequest) (api.Page, error) {
	return h.page(ctx, "getUidList", map[string]any{"unique": unique}, pr)
}

func (h httpAPI) GetUIDListByGroup(ctx context.Context, group string, unique bool, pr api.PageRequest) (api.Page, error) {
	return h.page(ctx, "getUidListByGroup", map[string]any{"group": group, "unique": unique}, pr)
}

func (h httpAPI) GetUIDCount(ctx context.Context, uniquePercent float64) (api.Count, error) {
	p := map[string]any{}
	if uniquePercent != 0 {
		p["unique_percent"] = uniquePercent
	}
	return h.count(ctx, "getUidCount", p)
}

func (h httpAPI) GetUIDCountByGroup(ctx context.Context, group string) (api.Count, error) {
	return h.count(ctx, "getUidCountByGroup", map[string]any{"group": group})
}

func (h httpAPI) GetGroupList(ctx context.Context, unique bool, pr api.PageRequest) (api.Page, error) {
	return h.page(ctx, "getGroupList", map[string]any{"unique": unique}, pr)
}

func (h httpAPI) GetClientSessionsByGroup(ctx context.Context, group string) (api.ClientSessions, error) {
	var cs api.ClientSessions
	err := h.call(ctx, "getClientSessionsByGroup", map[string]any{"group": group}, &cs.Sessions, &cs.Coverage)
	return cs, err
}

func (h httpAPI) CloseClient(ctx context.Context, client string, force bool) error {
	return h.call(ctx, "closeClient", map[string]any{"client": client, "force": force}, nil, nil)
}

func (h httpAPI) CloseClientWith(ctx context.Context, client string, force bool, msg []byte) error {
	p := map[string]any{"client": client, "force": force}
	if len(msg) > 0 {
		p = messageParams(p, msg)
	}
	return h.call(ctx, "closeClient", p, nil, nil)
}

func (h httpAPI) CloseUID(ctx context.Context, uid string, force bool, msg []byte) error {
	p := map[string]any{"uid": uid, "force": force}
	if len(msg) > 0 {
		p = messageParams(p, msg)
	}
	return h.call(ctx, "closeUid", p, nil, nil)
}

func (h httpAPI) SendToClients(ctx context.Context, clients []string, msg []byte) error {
	return h.call(ctx, "sendToClients", messageParams(map[string]any{"clients": clients}, msg), nil, nil)
}

func (h httpAPI) IsUIDsOnline(ctx context.Context, uids []string) (api.Bools, error) {
	var b api.Bools
	err := h.call(ctx, "isUidsOnline", map[string]any{"uids": uids}, &b.Values, &b.Coverage)
	return b, err
}

func (h httpAPI) GetClientCountByGroups(ctx context.Context, groups []string) (api.Counts, error) {
	var c api.Counts
	err := h.call(ctx, "getClientCountByGroups", map[string]any{"groups": groups}, &c.Values, &c.Coverage)
	return c, err
}

func (h httpAPI) GetClientListByUIDs(ctx context.Context, uids []string) (api.ClientLists, error) {
	var l api.ClientLists
	err := h.call(ctx, "getClientListByUids", map[string]any{"uids": uids}, &l.Values, &l.Coverage)
	return l, err
}

func (h httpAPI) BindUID(ctx context.Context, client, uid string) error {
	return h.call(ctx, "bindUid", map[string]any{"client": client, "uid": uid}, nil, nil)
}

func (h httpAPI) UnbindUID(ctx context.Context, client string) error {
	return h.call(ctx, "unbindUid", map[string]any{"client": client}, nil, nil)
}

func (h httpAPI) JoinGroup(ctx context.Context, client, group string) error {
	return h.call(ctx, "joinGroup", map[string]any{"client": client, "group": group}, nil, nil)
}

func (h httpAPI) LeaveGroup(ctx context.Context, client, group string) error {
	return h.call(ctx, "leaveGroup", map[string]any{"client": client, "group": group}, nil, nil)
}

func (h httpAPI) UnGroup(ctx context.Context, group string) error {
	return h.call(ctx, "unGroup", map[string]any{"group": group}, nil, nil)
}

func (h httpAPI) SetSession(ctx context.Context, client string, s api.Session) error {
	return h.call(ctx, "setSession", map[string]any{"client": client, "session": s}, nil, nil)
}

func (h httpAPI) UpdateSession(ctx context.Context, client string, s api.Session) error {
	return h.call(ctx, "updateSession", map[string]any{"client": client, "session": s}, nil, nil)
}

func (h httpAPI) DeleteSession(ctx context.Context, client string) error {
	return h.call(ctx, "deleteSession", map[string]any{"client": client}, nil, nil)
}

func (h httpAPI) Protect(ctx context.Context, client string, on bool) error {
	return h.call(ctx, "protect", map[string]any{"client": client, "protect": on}, nil, nil)
}

func (h httpAPI) PauseRecv(ctx context.Context, client string) error {
	return h.call(ctx, "pauseRecv", map[string]any{"client": client}, nil, nil)
}

func (h httpAPI) ResumeRecv(ctx context.Context, client string) error {
	return h.call(ctx, "resumeRecv", map[string]any{"client": client}, nil, nil)
}

func (h httpAPI) Confirm(ctx context.Context, client string) error {
	return h.call(ctx, "confirm", map[string]any{"client": client}, nil, nil)
}

func (h httpAPI) SetBinary(ctx context.Context, client string, on bool) error {
	return h.call(ctx, "setBinary", map[string]any{"client": client, "binary": on}, nil, nil)
}

func (h httpAPI) GetSession(ctx context.Context, client string) (api.Session, error) {
	var s api.Session
	err := h.call(ctx, "getSession", map[string]any{"client": client}, &s, nil)
	return s, err
}

func (h httpAPI) OnListeners(names ...string) api.API {
	h.scope = names
	return h
}

func (h httpAPI) SendValue(ctx context.Context, to api.Target, v any) error {
	p := map[string]any{"data": v}
	method := "sendToAll"
	switch {
	case len(to.Clients) == 1:
		method, p["client"] = "sendToClient", to.Clients[0]
	case len(to.Clients) > 1:
		method, p["clients"] = "sendToClients", to.Clients
	case len(to.UIDs) > 0:
		method, p["uids"] = "sendToUid", to.UIDs
	case len(to.Groups) > 0:
		method, p["groups"] = "sendToGroup", to.Groups
	}
	return h.call(ctx, method, withoutParam(p, to.Without), nil, nil)
}

func (h httpAPI) GetAllClientSessions(ctx context.Context, pr api.PageRequest) (api.SessionPage, error) {
	p := map[string]any{}
	if pr.Cursor != "" {
		p["cursor"] = pr.Cursor
	}
	if pr.Limit != 0 {
		p["limit"] = pr.Limit
	}
	var r struct {
		Sessions   map[string]api.Session `json:"sessions"`
		NextCursor string                 `json:"next_cursor"`
		Partial    bool                   `json:"partial"`
		Missing    []string               `json:"missing"`
	}
	err := h.call(ctx, "getAllClientSessions", p, &r, nil)
	out := api.SessionPage{Sessions: r.Sessions, NextCursor: r.NextCursor, Coverage: api.Coverage{Partial: r.Partial, Missing: r.Missing}}
	if len(out.Missing) == 0 {
		out.Missing = nil
	}
	return out, err
}

func (h httpAPI) groupCounts(ctx context.Context, method string) (api.GroupCounts, error) {
	var r struct {
		Counts    map[string]int `json:"counts"`
		Truncated bool           `json:"truncated"`
	}
	var out api.GroupCounts
	err := h.call(ctx, method, nil, &r, &out.Coverage)
	out.Values, out.Truncated = r.Counts, r.Truncated
	return out, err
}

func (h httpAPI) GetAllGroupClientIDCount(ctx context.Context) (api.GroupCounts, error) {
	return h.groupCounts(ctx, "getAllGroupClientIdCount")
}

func (h httpAPI) GetAllGroupUIDCount(ctx context.Context) (api.GroupCounts, error) {
	return h.groupCounts(ctx, "getAllGroupUidCount")
}

func (h httpAPI) GetAllGroupClientIDList(ctx context.Context, pr api.PageRequest) (api.GroupLists, error) {
	p := map[string]any{}
	if pr.Cursor != "" {
		p["cursor"] = pr.Cursor
	}
	if pr.Limit != 0 {
		p["limit"] = pr.Limit
	}
	var r struct {
		Groups     map[string][]string `json:"groups"`
		NextCursor string              `json:"next_cursor"`
		Partial    bool                `json:"partial"`
		Missing    []string            `json:"missing"`
	}
	err := h.call(ctx, "getAllGroupClientIdList", p, &r, nil)
	out := api.GroupLists{Values: r.Groups, NextCursor: r.NextCursor, Coverage: api.Coverage{Partial: r.Partial, Missing: r.Missing}}
	if len(out.Missing) == 0 {
		out.Missing = nil
	}
	return out, err
}
