package httpapi

import (
	"context"

	"github.com/gatework/gatework/api"
)

// This file holds the methods of the GatewayWorker / imi ports
// (docs/api.md).

// finalMessageParams is an optional last message before a close.
type finalMessageParams struct {
	Message       *string `json:"message" doc:"a last message, as a UTF-8 string, sent before the close and flushed even with force; at most one of message and message_base64"`
	MessageBase64 *string `json:"message_base64" doc:"a last message as standard base64 (RFC 4648, padded) for arbitrary bytes; at most one of message and message_base64"`
}

// bytes is the final message, nil when none is given.
func (f *finalMessageParams) bytes() ([]byte, error) {
	if f.Message == nil && f.MessageBase64 == nil {
		return nil, nil
	}
	m := messageParams{Message: f.Message, MessageBase64: f.MessageBase64}
	return m.bytes()
}

type closeClientParams struct {
	closeParams
	finalMessageParams
}

type closeUIDParams struct {
	uidParams
	Force bool `json:"force" default:"false" doc:"drop unsent data and close at once; otherwise queued data is flushed first"`
	finalMessageParams
}

// closeClientMethod is closeClient, with an optional final message.
func closeClientMethod() *method {
	return def("closeClient", resultNull, "Close a connection, after a final message if one is given; unless force, its queued data is flushed first.",
		func(ctx context.Context, a api.API, p *closeClientParams) (reply, error) {
			msg, err := p.bytes()
			if err != nil {
				return reply{}, err
			}
			if msg == nil {
				return reply{}, a.CloseClient(ctx, p.Client, p.Force)
			}
			return reply{}, a.CloseClientWith(ctx, p.Client, p.Force, msg)
		})
}

// closeUIDMethod is closeUid: imi's closeByFlag.
func closeUIDMethod() *method {
	return def("closeUid", resultNull, "Close every connection bound to the uid (imi closeByFlag), each after a final message if one is given; returns once the bus has taken the command.",
		func(ctx context.Context, a api.API, p *closeUIDParams) (reply, error) {
			msg, err := p.bytes()
			if err != nil {
				return reply{}, err
			}
			return reply{}, a.CloseUID(ctx, p.UID, p.Force, msg)
		}).alias("closeByFlag")
}

type sendToClientsParams struct {
	Clients []string `json:"clients" required:"true" doc:"client ids; each gets the message once (repeats dropped); at most 10000"`
	messageParams
}

type uidsParams struct {
	UIDs []string `json:"uids" required:"true" doc:"user ids (repeats dropped); at most 10000"`
}

type groupsParams struct {
	Groups []string `json:"groups" required:"true" doc:"group names (repeats dropped); at most 10000"`
}

// sendToClientsMethod is sendToClients: GatewayWorker's sendToAll($data,
// $client_ids), imi's send($data, [$ids]).
func sendToClientsMethod() *method {
	return def("sendToClients", resultNull, "Send the message to each of the clients once: one bus message per gateway.",
		func(ctx context.Context, a api.API, p *sendToClientsParams) (reply, error) {
			return reply{}, p.send(
				func(msg []byte) error { return a.SendToClients(ctx, p.Clients, msg) },
				func(v any) error { return a.SendValue(ctx, api.Target{Clients: p.Clients}, v) })
		})
}

// isUIDsOnlineMethod is isUidsOnline (GatewayClient).
func isUIDsOnlineMethod() *method {
	return def("isUidsOnline", resultCoveredBoolMap, "Whether each uid has a connection, by uid, in one query round.",
		func(ctx context.Context, a api.API, p *uidsParams) (reply, error) {
			b, err := a.IsUIDsOnline(ctx, p.UIDs)
			return covered(nonNilMap(b.Values), b.Coverage), err
		})
}

// getClientCountByGroupsMethod is getClientCountByGroups (GatewayClient's
// batchGetClientCountByGroup).
func getClientCountByGroupsMethod() *method {
	return def("getClientCountByGroups", resultCoveredCountMap, "The number of members of each group, by group, in one query round.",
		func(ctx context.Context, a api.API, p *groupsParams) (reply, error) {
			c, err := a.GetClientCountByGroups(ctx, p.Groups)
			return covered(nonNilMap(c.Values), c.Coverage), err
		}).alias("batchGetClientCountByGroup")
}

// getClientListByUIDsMethod is getClientListByUids (GatewayClient's
// batchGetClientIdByUid).
func getClientListByUIDsMethod() *method {
	return def("getClientListByUids", resultCoveredListMap, "The client ids of each uid, by uid, in one query round.",
		func(ctx context.Context, a api.API, p *uidsParams) (reply, error) {
			l, err := a.GetClientListByUIDs(ctx, p.UIDs)
			return covered(nonNilMap(l.Values), l.Coverage), err
		}).alias("batchGetClientIdByUid")
}

// getAllClientSessionsMethod is getAllClientSessions (GatewayWorker).
func getAllClientSessionsMethod() *method {
	return def("getAllClientSessions", resultSessionPage, "The session of every connection by client id, one page at a time.",
		func(ctx context.Context, a api.API, p *pageParams) (reply, error) {
			sp, err := a.GetAllClientSessions(ctx, p.page())
			out := make(map[string]api.Session, len(sp.Sessions))
			for c, s := range sp.Sessions {
				out[c] = nonNilSession(s)
			}
			return reply{result: sessionPageJSON{Sessions: out, NextCursor: sp.NextCursor,
				Partial: sp.Partial, Missing: nonNilSlice(sp.Missing)}}, err
		})
}

// getAllGroupClientIDCountMethod is getAllGroupClientIdCount
// (GatewayWorker).
func getAllGroupClientIDCountMethod() *method {
	return def("getAllGroupClientIdCount", resultGroupCounts, "The number of members of every group, by group, in one query round.",
		func(ctx context.Context, a api.API, _ *noParams) (reply, error) {
			gc, err := a.GetAllGroupClientIDCount(ctx)
			return groupCountsReply(gc), err
		})
}

// getAllGroupUIDCountMethod is getAllGroupUidCount (GatewayWorker).
func getAllGroupUIDCountMethod() *method {
	return def("getAllGroupUidCount", resultGroupCounts, "The number of distinct uids among the members of every group, by group, in one query round.",
		func(ctx context.Context, a api.API, _ *noParams) (reply, error) {
			gc, err := a.GetAllGroupUIDCount(ctx)
			return groupCountsReply(gc), err
		})
}

// getAllGroupClientIDListMethod is getAllGroupClientIdList
// (GatewayWorker).
func getAllGroupClientIDListMethod() *method {
	return def("getAllGroupClientIdList", resultGroupListPage, "The client ids of every group, by group, one page of groups at a time (limit counts groups).",
		func(ctx context.Context, a api.API, p *pageParams) (reply, error) {
			gl, err := a.GetAllGroupClientIDList(ctx, p.page())
			return reply{result: groupListPageJSON{Groups: nonNilMap(gl.Values), NextCursor: gl.NextCursor,
				Partial: gl.Partial, Missing: nonNilSlice(gl.Missing)}}, err
		})
}

// sessionPageJSON is getAllClientSessions' result.
type sessionPageJSON struct {
	Sessions   map[string]api.Session `json:"sessions"`
	NextCursor string                 `json:"next_cursor"`
	Partial    bool                   `json:"partial"`
	Missing    []string               `json:"missing"`
}

// groupListPageJSON is getAllGroupClientIdList's result.
type groupListPageJSON struct {
	Groups     map[string][]string `json:"groups"`
	NextCursor string              `json:"next_cursor"`
	Partial    bool                `json:"partial"`
	Missing    []string            `json:"missing"`
}

// groupCountsJSON is the result of getAllGroupClientIdCount and
// getAllGroupUidCount.
type groupCountsJSON struct {
	Counts    map[string]int `json:"counts"`
	Truncated bool           `json:"truncated"`
}

func groupCountsReply(gc api.GroupCounts) reply {
	return covered(groupCountsJSON{Counts: nonNilMap(gc.Values), Truncated: gc.Truncated}, gc.Coverage)
}

// nonNilSlice returns s, or an empty slice for nil (so it encodes as []).
func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// nonNilMap returns m, or an empty map for nil (so it encodes as {}).
func nonNilMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}
