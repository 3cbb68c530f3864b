package api

import (
	"context"
	"fmt"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/codec"
)

// This file holds structured sends (imi's send beside sendRaw): a value
// encoded by each listener's codec (docs/api.md, "Codecs").

// Target says who a SendValue reaches: exactly one of Clients, UIDs,
// Groups and All, with the meaning of SendToClient / SendToClients,
// SendToUID, SendToGroup and SendToAll, and their bounds (at most
// MaxBatchNames clients). Without excludes clients from a send to UIDs,
// Groups or All.
type Target struct {
	Clients []string
	UIDs    []string
	Groups  []string
	All     bool
	Without []string
}

// SendValue sends the structured value v to the target: v travels as JSON
// (encoding/json; a json.RawMessage is taken as is) and each gateway
// encodes it with the codec of each recipient's listener, once per codec,
// not once per recipient: a json (or raw) listener gets the JSON text, a
// listener with another codec that codec's encoding of the decoded JSON
// value. A value that does not encode to JSON gives ErrInvalidArgument
// before touching the bus; one that a listener's codec refuses is not
// sent to that listener's clients (a gateway logs it). Otherwise it
// behaves as the raw send of the same target.
func (c *Client) SendValue(ctx context.Context, to Target, v any) error {
	msg, err := codec.ToNeutral(v)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	kinds := 0
	for _, set := range []bool{len(to.Clients) > 0, len(to.UIDs) > 0, len(to.Groups) > 0, to.All} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return fmt.Errorf("%w: a target is exactly one of clients, uids, groups and all", ErrInvalidArgument)
	}
	if err := checkClients(to.Without); err != nil {
		return err
	}
	switch {
	case len(to.Clients) == 1 && len(to.Without) == 0:
		return c.sendClient(ctx, to.Clients[0], msg, true)
	case len(to.Clients) > 0:
		if len(to.Without) > 0 {
			return fmt.Errorf("%w: without is for sends to uids, groups or all", ErrInvalidArgument)
		}
		return c.sendClients(ctx, to.Clients, msg, true)
	case len(to.UIDs) > 0:
		if err := checkNames("uid", to.UIDs); err != nil {
			return err
		}
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToUID, UIDs: to.UIDs, Data: msg, Without: to.Without, Structured: true}
		return c.publishRouted(ctx, &cmd, to.UIDs, c.subj.UID)
	case len(to.Groups) > 0:
		if err := checkNames("group", to.Groups); err != nil {
			return err
		}
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToGroup, Groups: to.Groups, Data: msg, Without: to.Without, Structured: true}
		return c.publishRouted(ctx, &cmd, to.Groups, c.subj.Group)
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToAll, Data: msg, Without: to.Without, Structured: true}
	return c.publish(ctx, c.bcastSubj, &cmd)
}
