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
			msg, err := p.bytes()
			if err != nil {
				return reply{}, err
			}
			return reply{}, a.SendToClients(ctx, p.Clients, msg)
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

// nonNilMap returns m, or an empty map for nil (so it encodes as {}).
func nonNilMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}
