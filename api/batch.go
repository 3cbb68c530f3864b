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
	return c.sendClients(ctx, clients, msg, false)
}

// sendClients is SendToClients, of a structured value's neutral form when
// structured.
func (c *Client) sendClients(ctx context.Context, clients []string, msg []byte, structured bool) error {
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
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToClient, Clients: byGW[gw], Data: msg, Structured: structured}
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

// SessionPage is one page of getAllClientSessions: the sessions of the
// page's clients by client id (an empty session for a client without
// one). Pages are walked as Page's are: by client id, ascending.
type SessionPage struct {
	Sessions   map[string]Session
	NextCursor string
	Coverage
}

// GetAllClientSessions returns one page of the sessions of every open
// connection, by client id (GatewayWorker's getAllClientSessions, which
// returns them all at once), in one query round per page. The cursor is a
// client id or empty; a gateway cuts its share of a page at 512 KiB of
// sessions (the page then ends earlier, and NextCursor goes on from it).
func (c *Client) GetAllClientSessions(ctx context.Context, page PageRequest) (SessionPage, error) {
	if page.Cursor != "" {
		if _, err := gatewayOf(page.Cursor); err != nil {
			return SessionPage{}, fmt.Errorf("%w: cursor: %v", ErrInvalidArgument, err)
		}
	}
	got := make(map[string]Session)
	p, err := c.listWith(ctx, queryCmd(bus.OpClientSessions, "", ""), true, page, nil, func(r *bus.Reply) (bool, error) {
		decoded := make([]Session, len(r.Sessions))
		for i, cs := range r.Sessions {
			if _, err := gatewayOf(cs.Client); err != nil {
				return false, err
			}
			s, err := decodeSession(cs.Session)
			if err != nil {
				return false, fmt.Errorf("client %s: %w", cs.Client, err)
			}
			decoded[i] = s
		}
		for i, cs := range r.Sessions {
			got[cs.Client] = decoded[i]
		}
		return false, nil
	})
	if err != nil {
		return SessionPage{}, err
	}
	out := SessionPage{Sessions: make(map[string]Session, len(p.Items)), NextCursor: p.NextCursor, Coverage: p.Coverage}
	for _, id := range p.Items {
		s := got[id]
		if s == nil {
			s = Session{}
		}
		out.Sessions[id] = s
	}
	return out, nil
}

// GroupCounts maps every group to a count, with the gateways that did not
// answer. Truncated says the map is incomplete or a count is an upper
// bound: a gateway had more groups than it answers at once (MaxLimit, or
// 512 KiB of names), or, for GetAllGroupUIDCount, more uids in its
// groups than it lists at once (see there).
type GroupCounts struct {
	Values    map[string]int
	Truncated bool
	Coverage
}

// GetAllGroupClientIDCount counts the members of every group that has one
// (GatewayWorker's getAllGroupClientIdCount), in one query round. Each
// gateway answers at most MaxLimit groups (the first by name); past that
// Truncated is set: walk GetGroupList and use GetClientCountByGroups.
func (c *Client) GetAllGroupClientIDCount(ctx context.Context) (GroupCounts, error) {
	cmd := queryCmd(bus.OpGroupClientCounts, "", "")
	sums := make(map[string]uint64)
	truncated := false
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		if len(r.Named) > MaxLimit {
			return false, fmt.Errorf("%d groups in one answer, at most %d", len(r.Named), MaxLimit)
		}
		for _, nc := range r.Named {
			sums[nc.Name] = addSat(sums[nc.Name], nc.Count)
		}
		truncated = truncated || r.More
		return false, nil
	})
	if err != nil {
		return GroupCounts{}, err
	}
	out := GroupCounts{Values: make(map[string]int, len(sums)), Truncated: truncated, Coverage: cov}
	for g, n := range sums {
		out.Values[g] = clampInt(n)
	}
	return out, nil
}

// GetAllGroupUIDCount counts the distinct uids bound to the members of
// every group that has a bound member (GatewayWorker's
// getAllGroupUidCount), in one query round: each gateway lists the uids
// of its groups, so a uid connected to several gateways counts once. A
// gateway lists at most 512 KiB of uids; past that it sends only its
// count for the remaining groups, which is then added as is (a uid also
// on another gateway may count twice: an upper bound) and Truncated is
// set; GetUIDCountByGroup is exact for one group.
func (c *Client) GetAllGroupUIDCount(ctx context.Context) (GroupCounts, error) {
	cmd := queryCmd(bus.OpGroupUIDCounts, "", "")
	sets := make(map[string]map[string]struct{})
	unlisted := make(map[string]uint64)
	truncated := false
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		if len(r.Named) > MaxLimit {
			return false, fmt.Errorf("%d groups in one answer, at most %d", len(r.Named), MaxLimit)
		}
		for _, nc := range r.Named {
			if len(nc.Items) == 0 {
				if nc.Count > 0 {
					unlisted[nc.Name] = addSat(unlisted[nc.Name], nc.Count)
					truncated = true
				}
				continue
			}
			set := sets[nc.Name]
			if set == nil {
				set = make(map[string]struct{}, len(nc.Items))
				sets[nc.Name] = set
			}
			for _, u := range nc.Items {
				set[u] = struct{}{}
			}
		}
		truncated = truncated || r.More
		return false, nil
	})
	if err != nil {
		return GroupCounts{}, err
	}
	out := GroupCounts{Values: make(map[string]int, len(sets)+len(unlisted)), Truncated: truncated, Coverage: cov}
	for g, set := range sets {
		out.Values[g] = clampInt(uint64(len(set)))
	}
	for g, n := range unlisted {
		out.Values[g] = clampInt(addSat(uint64(out.Values[g]), n))
	}
	return out, nil
}

// GroupLists is one page of getAllGroupClientIdList: the client ids of
// each group of the page, ascending. Pages are walked by group name,
// ascending, as Page's are.
type GroupLists struct {
	Values     map[string][]string
	NextCursor string
	Coverage
}

// GetAllGroupClientIDList returns one page of the groups and the client
// ids of each (GatewayWorker's getAllGroupClientIdList, which returns
// them all at once), in one query round per page: page.Limit counts
// groups; a gateway lists at most MaxLimit ids per group and cuts its
// share of a page at 512 KiB of ids (the page then ends earlier).
func (c *Client) GetAllGroupClientIDList(ctx context.Context, page PageRequest) (GroupLists, error) {
	got := make(map[string][]string)
	p, err := c.listWith(ctx, queryCmd(bus.OpGroupClientLists, "", ""), true, page, nil, func(r *bus.Reply) (bool, error) {
		for _, nc := range r.Named {
			if len(nc.Items) > MaxLimit {
				return false, fmt.Errorf("group %s: %d ids, at most %d", nc.Name, len(nc.Items), MaxLimit)
			}
			for _, id := range nc.Items {
				if _, err := gatewayOf(id); err != nil {
					return false, err
				}
			}
		}
		for _, nc := range r.Named {
			got[nc.Name] = append(got[nc.Name], nc.Items...)
		}
		return false, nil
	})
	if err != nil {
		return GroupLists{}, err
	}
	out := GroupLists{Values: make(map[string][]string, len(p.Items)), NextCursor: p.NextCursor, Coverage: p.Coverage}
	for _, g := range p.Items {
		ids := got[g]
		if ids == nil {
			ids = []string{}
		}
		slices.Sort(ids)
		out.Values[g] = slices.Compact(ids)
	}
	return out, nil
}
