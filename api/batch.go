package api

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gatework/gatework/bus"
)

// This file holds the calls of the GatewayWorker / imi ports (docs/api.md).

// CloseClientWith closes client after the final message msg: msg is queued
// behind what is already queued (force drops that, not msg), flushed, then
// the connection closes gracefully. An empty msg is CloseClient. It
// returns once the gateway has started the close.
func (c *Client) CloseClientWith(ctx context.Context, client string, force bool, msg []byte) error {
	cmd := clientCmd(bus.OpCloseClient, client)
	cmd.Flag = force
	cmd.Data = msg
	return c.mutate(ctx, &cmd)
}

// CloseUID closes every connection bound to uid (non-empty), each after
// msg when msg is non-empty (see CloseClientWith); force drops data not yet
// sent. It goes to the uid's subject, so only gateways holding the uid get
// it, and returns once the bus has taken the command, not once gateways
// applied it.
func (c *Client) CloseUID(ctx context.Context, uid string, force bool, msg []byte) error {
	if uid == "" {
		return fmt.Errorf("%w: empty uid", ErrInvalidArgument)
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpCloseUID, UIDs: []string{uid}, Arg: uid, Flag: force, Data: msg}
	return c.publish(ctx, c.subj.UID(uid), &cmd)
}

// MaxBatchNames bounds the client ids, uids or groups of one batch call
// (SendToClients, IsUIDsOnline, GetClientCountByGroups); past it the call
// fails with ErrInvalidArgument before touching the bus.
const MaxBatchNames = 10000

// Bools maps each name asked for to a boolean, with the gateways that did
// not answer.
type Bools struct {
	Values map[string]bool
	Coverage
}

// Counts maps each name asked for to a count, with the gateways that did
// not answer.
type Counts struct {
	Values map[string]int
	Coverage
}

// checkBatch rejects an empty list, empty names and more than
// MaxBatchNames names, and returns the names without repeats, in order.
func checkBatch(what string, names []string) ([]string, error) {
	if len(names) > MaxBatchNames {
		return nil, fmt.Errorf("%w: %d %ss, at most %d per call", ErrInvalidArgument, len(names), what, MaxBatchNames)
	}
	if err := checkNames(what, names); err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(names))
	out := make([]string, 0, len(names))
	for _, n := range names {
		if _, dup := seen[n]; !dup {
			seen[n] = struct{}{}
			out = append(out, n)
		}
	}
	return out, nil
}

// SendToClients sends msg to each of clients once (GatewayWorker's
// sendToAll($data, $client_ids), imi's send($data, [$ids])): one bus
// message per gateway that owns some of them, not one per client. Clients
// that are not connected are skipped silently; a malformed id gives
// ErrInvalidClient and nothing is sent. Like SendToClient it returns once
// the bus has taken the messages, except that a message over
// CheckedSendSize waits for each gateway's answer.
func (c *Client) SendToClients(ctx context.Context, clients []string, msg []byte) error {
	ids, err := checkBatch("client", clients)
	if err != nil {
		return err
	}
	byGW := make(map[string][]string)
	var order []string
	for _, id := range ids {
		gw, err := gatewayOf(id)
		if err != nil {
			return err
		}
		if _, ok := byGW[gw]; !ok {
			order = append(order, gw)
		}
		byGW[gw] = append(byGW[gw], id)
	}
	// Refused as a whole or not at all (publish checks again per gateway;
	// the flag may rise in between, which is then a partial send).
	if err := c.checkLoad(bus.OpSendToClient); err != nil {
		return err
	}
	for _, gw := range order {
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToClient, Clients: byGW[gw], Data: msg}
		if len(msg) > CheckedSendSize {
			if err := c.checkLoad(cmd.Op); err != nil {
				return err
			}
			if _, err := c.request(ctx, &cmd); err != nil && !errors.Is(err, errGatewayGone) {
				return err
			}
			continue
		}
		if err := c.publish(ctx, c.cmdSubject(gw), &cmd); err != nil {
			return err
		}
	}
	return nil
}

// IsUIDsOnline reports for each of uids whether any connection is bound to
// it (GatewayClient's isUidsOnline), in one query round: every uid asked
// for is in Values. It returns as soon as every uid is found online.
func (c *Client) IsUIDsOnline(ctx context.Context, uids []string) (Bools, error) {
	names, err := checkBatch("uid", uids)
	if err != nil {
		return Bools{}, err
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpIsUIDsOnline, UIDs: names}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = false
	}
	online := 0
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		for _, nc := range r.Named {
			if was, asked := out[nc.Name]; asked && !was && nc.Count > 0 {
				out[nc.Name] = true
				online++
			}
		}
		return online == len(names), nil
	})
	if err != nil {
		return Bools{}, err
	}
	return Bools{Values: out, Coverage: cov}, nil
}

// GetClientCountByGroups counts the members of each of groups
// (GatewayClient's batchGetClientCountByGroup), in one query round: every
// group asked for is in Values, 0 when it has no member.
func (c *Client) GetClientCountByGroups(ctx context.Context, groups []string) (Counts, error) {
	names, err := checkBatch("group", groups)
	if err != nil {
		return Counts{}, err
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpClientCountByGroups, Groups: names}
	sums := make(map[string]uint64, len(names))
	for _, n := range names {
		sums[n] = 0
	}
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		for _, nc := range r.Named {
			if s, asked := sums[nc.Name]; asked {
				sums[nc.Name] = addSat(s, nc.Count)
			}
		}
		return false, nil
	})
	if err != nil {
		return Counts{}, err
	}
	out := make(map[string]int, len(sums))
	for n, s := range sums {
		out[n] = clampInt(s)
	}
	return Counts{Values: out, Coverage: cov}, nil
}

// ClientLists maps each uid asked for to its client ids, with the gateways
// that did not answer.
type ClientLists struct {
	Values map[string][]string
	Coverage
}

// GetClientListByUIDs returns the client ids of each of uids, ascending
// (GatewayClient's batchGetClientIdByUid), in one query round: every uid
// asked for is in Values, with an empty list when it has no connection. A
// gateway answers at most MaxLimit ids per uid.
func (c *Client) GetClientListByUIDs(ctx context.Context, uids []string) (ClientLists, error) {
	names, err := checkBatch("uid", uids)
	if err != nil {
		return ClientLists{}, err
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpClientListByUIDs, UIDs: names}
	out := make(map[string][]string, len(names))
	for _, n := range names {
		out[n] = []string{}
	}
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		// A reply with a malformed id counts as missing, all of it.
		for _, nc := range r.Named {
			for _, id := range nc.Items {
				if _, err := gatewayOf(id); err != nil {
					return false, err
				}
			}
		}
		for _, nc := range r.Named {
			if list, asked := out[nc.Name]; asked {
				out[nc.Name] = append(list, nc.Items...)
			}
		}
		return false, nil
	})
	if err != nil {
		return ClientLists{}, err
	}
	for _, list := range out {
		slices.Sort(list)
	}
	return ClientLists{Values: out, Coverage: cov}, nil
}
