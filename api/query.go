package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
	"github.com/gatework/gatework/internal/membership"
)

// Bounds of one scatter-gather round.
const (
	// maxExpected bounds the gateways one query waits for: peers named in
	// replies beyond it are ignored (and logged), so a broken gateway cannot
	// make a query track millions of fake ids.
	maxExpected = membership.DefaultMaxGateways
	// maxPendingReplies and maxPendingBytes bound the replies queued for one
	// query; past them NATS drops replies and their gateways count as missing.
	maxPendingReplies = 2 * maxExpected
	maxPendingBytes   = 256 << 20
)

// answer is where one gateway stands in a scatter-gather round.
type answer uint8

const (
	waiting  answer = iota // expected, not heard yet
	answered               // replied successfully
	failed                 // replied with an error or garbage: counts as missing
)

// eachReply receives one gateway's successful reply. It returns stop to end
// the round early (the answer cannot change any more), or an error to count
// that gateway as missing; it must not keep r's slices beyond the call
// unless it owns them (decoded strings are copies, byte slices are not).
type eachReply func(r *bus.Reply) (stop bool, err error)

// scatter publishes cmd on the query subject and hands every gateway's
// reply to each, until every expected gateway answered, the query deadline
// (QueryTimeout, or ctx's deadline if earlier) passed, or each said stop.
// Expected are the live gateways of the membership plus every peer named in
// a reply, minus skip. It fails only when ctx is canceled (not on its
// deadline), when the Client is closed, or when NATS refuses the publish.
func (c *Client) scatter(ctx context.Context, cmd *bus.Command, skip map[string]bool, each eachReply) (Coverage, error) {
	if c.closed.Load() {
		return Coverage{}, ErrClosed
	}
	if err := ctx.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return Coverage{}, fmt.Errorf("api: %s: %w", cmd.Op, err)
	}
	if err := c.applyScope(cmd); err != nil {
		return Coverage{}, err
	}
	deadline := time.Now().Add(c.cfg.QueryTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	qctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	stopClose := context.AfterFunc(c.ctx, cancel)
	defer stopClose()

	expected := make(map[string]answer)
	for _, gw := range c.members.Live() {
		if !skip[gw] {
			expected[gw] = waiting
		}
	}
	if qctx.Err() != nil { // deadline already passed: everyone is missing
		return coverage(expected), nil
	}

	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return Coverage{}, c.busError(cmd.Op, err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(maxPendingReplies, maxPendingBytes); err != nil {
		return Coverage{}, c.busError(cmd.Op, err)
	}
	bp := getBuf()
	b := bus.AppendCommand((*bp)[:0], cmd)
	err = c.nc.PublishRequest(c.querySubj, inbox, b)
	putBuf(bp, b)
	if err != nil {
		return Coverage{}, c.busError(cmd.Op, err)
	}

	pending := len(expected)
	for pending > 0 || len(expected) == 0 {
		msg, err := sub.NextMsgWithContext(qctx)
		if err != nil {
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				// Nobody subscribes to queries: no gateway will answer.
				return coverage(expected), nil
			case errors.Is(err, nats.ErrSlowConsumer):
				c.log.Warn("api: query replies dropped", "op", cmd.Op.String(), "error", err)
				continue
			case c.closed.Load():
				return Coverage{}, ErrClosed
			case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
				return Coverage{}, fmt.Errorf("api: %s: %w", cmd.Op, ctx.Err())
			case qctx.Err() != nil:
				return coverage(expected), nil
			}
			return Coverage{}, c.busError(cmd.Op, err)
		}
		var rep bus.Reply
		if err := bus.DecodeReply(msg.Data, &rep); err != nil {
			c.log.Warn("api: bad query reply", "op", cmd.Op.String(), "error", err)
			continue
		}
		gw := rep.Gateway
		if !clientid.ValidGateway(gw) || skip[gw] {
			if !skip[gw] {
				c.log.Warn("api: query reply with invalid gateway id", "op", cmd.Op.String(), "gateway", gw)
			}
			continue
		}
		st, known := expected[gw]
		if known && st != waiting {
			continue // a second reply from the same gateway
		}
		if known {
			pending--
		}
		expected[gw] = failed // heard; answered once each accepts the reply
		c.members.Observe(gw)
		for _, p := range rep.Peers {
			if _, ok := expected[p]; ok || skip[p] || !clientid.ValidGateway(p) {
				continue
			}
			if len(expected) >= maxExpected {
				c.log.Warn("api: too many gateways named as peers, ignoring the rest",
					"op", cmd.Op.String(), "gateway", gw, "max", maxExpected)
				break
			}
			// A peer this client saw leave (or expire) is not waited for:
			// the answering gateway may not have heard it leave yet.
			if !c.members.Observe(p) {
				continue
			}
			expected[p] = waiting
			pending++
		}
		if rep.ErrorCode != "" {
			c.log.Warn("api: gateway failed a query", "op", cmd.Op.String(), "gateway", gw,
				"code", rep.ErrorCode, "error", rep.Error)
			continue
		}
		stop, err := each(&rep)
		if err != nil {
			c.log.Warn("api: bad query reply", "op", cmd.Op.String(), "gateway", gw, "error", err)
			continue
		}
		expected[gw] = answered
		if stop {
			return Coverage{}, nil
		}
	}
	return coverage(expected), nil
}

// coverage names the expected gateways that did not answer successfully.
func coverage(expected map[string]answer) Coverage {
	var cov Coverage
	for gw, st := range expected {
		if st != answered {
			cov.Missing = append(cov.Missing, gw)
		}
	}
	if len(cov.Missing) > 0 {
		cov.Partial = true
		slices.Sort(cov.Missing)
	}
	return cov
}

// queryCmd returns a query Command. A single uid or group travels in Arg
// and, for gateways that read the lists, as the only item of UIDs / Groups.
func queryCmd(op bus.Op, uid, group string) bus.Command {
	cmd := bus.Command{Version: bus.Version, Op: op}
	switch {
	case uid != "":
		cmd.Arg, cmd.UIDs = uid, []string{uid}
	case group != "":
		cmd.Arg, cmd.Groups = group, []string{group}
	}
	return cmd
}

// count sums Reply.Count over every gateway that answers.
func (c *Client) count(ctx context.Context, cmd bus.Command) (Count, error) {
	var sum uint64
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		sum = addSat(sum, r.Count)
		return false, nil
	})
	if err != nil {
		return Count{}, err
	}
	return Count{Value: clampInt(sum), Coverage: cov}, nil
}

func addSat(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}

func clampInt(v uint64) int {
	if v > math.MaxInt {
		return math.MaxInt
	}
	return int(v)
}

// IsUIDOnline reports whether any connection is bound to uid. It returns
// at the first gateway that finds one (the answer is then certain and
// Coverage is complete); a false answer waits for every live gateway.
func (c *Client) IsUIDOnline(ctx context.Context, uid string) (Bool, error) {
	if uid == "" {
		return Bool{}, fmt.Errorf("%w: empty uid", ErrInvalidArgument)
	}
	cmd := queryCmd(bus.OpIsUIDOnline, uid, "")
	found := false
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		found = found || r.Found
		return found, nil
	})
	if err != nil {
		return Bool{}, err
	}
	return Bool{Value: found, Coverage: cov}, nil
}

// GetClientCount counts the open connections of every gateway.
func (c *Client) GetClientCount(ctx context.Context) (Count, error) {
	return c.count(ctx, queryCmd(bus.OpClientCount, "", ""))
}

// GetClientCountByGroup counts the members of group (non-empty).
func (c *Client) GetClientCountByGroup(ctx context.Context, group string) (Count, error) {
	if group == "" {
		return Count{}, fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	return c.count(ctx, queryCmd(bus.OpClientCountByGroup, "", group))
}

// pageLimit applies the PageRequest limit rules.
func pageLimit(limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, fmt.Errorf("%w: negative page limit %d", ErrInvalidArgument, limit)
	case limit == 0:
		return DefaultLimit, nil
	}
	return min(limit, MaxLimit), nil
}

// list asks every gateway for its items after the cursor and merges them
// into one page: ascending, at most the limit (extended, when not unique,
// to every copy of the last item), never past an item a gateway could not
// fit in its own page (so the next page, which starts after NextCursor,
// skips nothing).
func (c *Client) list(ctx context.Context, cmd bus.Command, unique bool, pr PageRequest, skip map[string]bool) (Page, error) {
	return c.listWith(ctx, cmd, unique, pr, skip, nil)
}

// listWith is list, handing each successful reply also to extra (when not
// nil) before its items are taken: extra collects what comes with the
// items (sessions, group members); its error counts the gateway as
// missing and must leave what it collected unchanged.
func (c *Client) listWith(ctx context.Context, cmd bus.Command, unique bool, pr PageRequest, skip map[string]bool, extra eachReply) (Page, error) {
	limit, err := pageLimit(pr.Limit)
	if err != nil {
		return Page{}, err
	}
	cmd.Cursor, cmd.Limit, cmd.Flag = pr.Cursor, uint32(limit), unique
	var (
		items   []string
		more    bool   // some gateway has items after its page
		bound   string // the smallest last item of the gateways that have more
		bounded bool
	)
	cov, err := c.scatter(ctx, &cmd, skip, func(r *bus.Reply) (bool, error) {
		if extra != nil {
			if _, err := extra(r); err != nil {
				return false, err
			}
		}
		its := r.Items
		if !slices.IsSorted(its) {
			slices.Sort(its)
		}
		// Only items after the cursor, whatever the gateway sent.
		its = its[sort.SearchStrings(its, pr.Cursor):]
		for len(its) > 0 && its[0] == pr.Cursor {
			its = its[1:]
		}
		if r.More {
			more = true
			if n := len(its); n > 0 && (!bounded || its[n-1] < bound) {
				bound, bounded = its[n-1], true
			}
		}
		items = append(items, its...)
		return false, nil
	})
	if err != nil {
		return Page{}, err
	}
	slices.Sort(items)
	if bounded {
		items = items[:sort.Search(len(items), func(i int) bool { return items[i] > bound })]
	}
	if unique {
		items = slices.Compact(items)
	}
	cut := false
	if len(items) > limit {
		n := limit
		for !unique && n < len(items) && items[n] == items[n-1] {
			n++ // never split the copies of one item across pages
		}
		cut = n < len(items)
		items = items[:n:n]
	}
	p := Page{Items: items, Coverage: cov}
	if p.Items == nil {
		p.Items = []string{}
	}
	if (more || cut) && len(items) > 0 {
		p.NextCursor = items[len(items)-1]
	}
	return p, nil
}

// clientList lists client ids; the cursor must be a client id or empty.
func (c *Client) clientList(ctx context.Context, cmd bus.Command, pr PageRequest) (Page, error) {
	if pr.Cursor != "" {
		if _, err := gatewayOf(pr.Cursor); err != nil {
			return Page{}, fmt.Errorf("%w: cursor: %v", ErrInvalidArgument, err)
		}
	}
	return c.list(ctx, cmd, true, pr, nil)
}

// GetClientList returns one page of the ids of every open connection.
func (c *Client) GetClientList(ctx context.Context, page PageRequest) (Page, error) {
	return c.clientList(ctx, queryCmd(bus.OpClientList, "", ""), page)
}

// GetClientListByGroup returns one page of the members of group.
func (c *Client) GetClientListByGroup(ctx context.Context, group string, page PageRequest) (Page, error) {
	if group == "" {
		return Page{}, fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	return c.clientList(ctx, queryCmd(bus.OpClientListByGroup, "", group), page)
}

// GetClientListByUID returns one page of the connections bound to uid.
func (c *Client) GetClientListByUID(ctx context.Context, uid string, page PageRequest) (Page, error) {
	if uid == "" {
		return Page{}, fmt.Errorf("%w: empty uid", ErrInvalidArgument)
	}
	return c.clientList(ctx, queryCmd(bus.OpClientListByUID, uid, ""), page)
}

// GetUIDList returns one page of the bound uids. With unique, each uid
// appears once; without, once per gateway that has it (copies of one uid
// are never split across pages).
func (c *Client) GetUIDList(ctx context.Context, unique bool, page PageRequest) (Page, error) {
	return c.list(ctx, queryCmd(bus.OpUIDList, "", ""), unique, page, nil)
}

// GetUIDListByGroup is GetUIDList restricted to the members of group.
func (c *Client) GetUIDListByGroup(ctx context.Context, group string, unique bool, page PageRequest) (Page, error) {
	if group == "" {
		return Page{}, fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	return c.list(ctx, queryCmd(bus.OpUIDListByGroup, "", group), unique, page, nil)
}

// GetGroupList returns one page of the groups that have a member. With
// unique, each group appears once; without, once per gateway that has it.
func (c *Client) GetGroupList(ctx context.Context, unique bool, page PageRequest) (Page, error) {
	return c.list(ctx, queryCmd(bus.OpGroupList, "", ""), unique, page, nil)
}

// GetUIDCount counts distinct bound uids: exactly when uniquePercent is 0,
// else as the sum of each gateway's distinct uids times uniquePercent
// (0 < uniquePercent ≤ 1), truncated toward zero as GatewayWorker and imi
// do (PHP intval): 10 uids at 0.55 count 5, not 6. The exact count asks each gateway for
// its count first and is done if at most one gateway has uids; otherwise it
// walks the unique uid list a page of MaxLimit at a time (memory bounded by
// one page per gateway, one query round per page).
func (c *Client) GetUIDCount(ctx context.Context, uniquePercent float64) (Count, error) {
	if math.IsNaN(uniquePercent) || uniquePercent < 0 || uniquePercent > 1 {
		return Count{}, fmt.Errorf("%w: uniquePercent %v not in [0, 1]", ErrInvalidArgument, uniquePercent)
	}
	if uniquePercent == 0 {
		return c.exactUIDCount(ctx, bus.OpUIDCount, bus.OpUIDList, "")
	}
	n, err := c.count(ctx, queryCmd(bus.OpUIDCount, "", ""))
	if err != nil {
		return Count{}, err
	}
	n.Value = estimateUIDs(n.Value, uniquePercent)
	return n, nil
}

// estimateUIDs returns n times uniquePercent truncated toward zero, as the
// originals' intval(count * percent).
func estimateUIDs(n int, uniquePercent float64) int {
	return int(float64(n) * uniquePercent)
}

// GetUIDCountByGroup counts the distinct uids bound to members of group,
// exactly (see GetUIDCount).
func (c *Client) GetUIDCountByGroup(ctx context.Context, group string) (Count, error) {
	if group == "" {
		return Count{}, fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	return c.exactUIDCount(ctx, bus.OpUIDCountByGroup, bus.OpUIDListByGroup, group)
}

func (c *Client) exactUIDCount(ctx context.Context, countOp, listOp bus.Op, group string) (Count, error) {
	cmd := queryCmd(countOp, "", group)
	var sum uint64
	nonzero := 0
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		sum = addSat(sum, r.Count)
		if r.Count > 0 {
			nonzero++
		}
		return false, nil
	})
	if err != nil {
		return Count{}, err
	}
	if nonzero <= 1 { // no uid is on two gateways: the sum is exact
		return Count{Value: clampInt(sum), Coverage: cov}, nil
	}
	// Walk; gateways that miss a round are not waited for again (their
	// share is already incomplete) and are reported missing.
	missing := make(map[string]bool)
	for _, gw := range cov.Missing {
		missing[gw] = true
	}
	total, cursor := 0, ""
	for {
		page, err := c.list(ctx, queryCmd(listOp, "", group), true, PageRequest{Cursor: cursor, Limit: MaxLimit}, missing)
		if err != nil {
			return Count{}, err
		}
		total += len(page.Items)
		for _, gw := range page.Missing {
			missing[gw] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	out := Count{Value: total}
	for gw := range missing {
		out.Missing = append(out.Missing, gw)
	}
	if len(out.Missing) > 0 {
		out.Partial = true
		slices.Sort(out.Missing)
	}
	return out, nil
}

// GetClientSessionsByGroup returns the session of every member of group,
// keyed by client id; the map and sessions are the caller's.
func (c *Client) GetClientSessionsByGroup(ctx context.Context, group string) (ClientSessions, error) {
	if group == "" {
		return ClientSessions{}, fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	cmd := queryCmd(bus.OpGroupSessions, "", group)
	out := ClientSessions{Sessions: make(map[string]Session)}
	cov, err := c.scatter(ctx, &cmd, nil, func(r *bus.Reply) (bool, error) {
		decoded := make([]Session, len(r.Sessions))
		for i, cs := range r.Sessions {
			s, err := decodeSession(cs.Session)
			if err != nil {
				return false, fmt.Errorf("client %s: %w", cs.Client, err)
			}
			decoded[i] = s
		}
		for i, cs := range r.Sessions {
			out.Sessions[cs.Client] = decoded[i]
		}
		return false, nil
	})
	if err != nil {
		return ClientSessions{}, err
	}
	out.Coverage = cov
	return out, nil
}

// encodeSession encodes s as a JSON object; nil is {}.
func encodeSession(s Session) ([]byte, error) {
	if s == nil {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("%w: session: %w", ErrInvalidArgument, err)
	}
	return b, nil
}

// decodeSession decodes a session JSON object; empty data is an empty,
// non-nil session.
func decodeSession(data []byte) (Session, error) {
	s := Session{}
	if len(bytes.TrimSpace(data)) == 0 {
		return s, nil
	}
	// UseNumber keeps integers beyond 2^53 exact (values are json.Number).
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("api: session from gateway is not a JSON object: %w", err)
	}
	if s == nil { // "null"
		s = Session{}
	}
	return s, nil
}
