package gateway

import (
	"slices"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
)

// This file holds the commands of the GatewayWorker / imi ports
// (docs/api.md): bus ops 50-69.

// closeUID closes every connection of this gateway bound to the uid in
// cmd.Arg (imi's closeByFlag, GatewayWorker's closeClient per client of a
// uid): force drops data not yet sent; a non-empty cmd.Data is a final
// message queued last before each close (see closeAfterLocked).
func (s *Server) closeUID(cmd *bus.Command) error {
	if cmd.Arg == "" {
		return codeErr(bus.ErrCodeInvalidRequest, "uid must not be empty")
	}
	sc := s.scopeOf(cmd)
	var victims []*conn
	for _, sh := range s.shards {
		sh.mu.Lock()
		victims = append(victims[:0], sh.uids[cmd.Arg]...)
		for _, c := range victims {
			if sc.has(c) {
				s.closeConnLocked(c, cmd.Data, cmd.Flag)
			}
		}
		sh.mu.Unlock()
	}
	return nil
}

// maxBatchNames bounds the uids or groups of one batch query (the API's
// bound too).
const maxBatchNames = 10000

// batchQuery answers this gateway's share of a batch query: one NameCount
// per distinct name asked for that this gateway has, in the order asked.
func (s *Server) batchQuery(cmd *bus.Command, rep *bus.Reply) error {
	names := cmd.UIDs
	if cmd.Op == bus.OpClientCountByGroups {
		names = cmd.Groups
	}
	if len(names) > maxBatchNames {
		return codeErr(bus.ErrCodeInvalidRequest, "%s: %d names, at most %d", cmd.Op, len(names), maxBatchNames)
	}
	sc := s.scopeOf(cmd)
	if sc.none() {
		return nil
	}
	if cmd.Op == bus.OpClientListByUIDs {
		s.clientsByUIDs(sc, names, rep)
		return nil
	}
	counts := make(map[string]uint64, len(names))
	s.eachShard(func(sh *shard) {
		for _, n := range names {
			if cmd.Op == bus.OpIsUIDsOnline {
				counts[n] += uint64(sc.inList(sh.uids[n]))
			} else {
				counts[n] += uint64(sc.inSet(sh.groups[n]))
			}
		}
	})
	for _, n := range names {
		if c := counts[n]; c > 0 {
			rep.Named = append(rep.Named, bus.NameCount{Name: n, Count: c})
			delete(counts, n)
		}
	}
	return nil
}

// maxIDsPerUID bounds the client ids of one uid in an
// OpClientListByUIDs answer (the page bound of list queries).
const maxIDsPerUID = maxLimit

// clientsByUIDs answers OpClientListByUIDs: for each distinct uid asked
// for that has connections here, its client ids, ascending, at most
// maxIDsPerUID.
func (s *Server) clientsByUIDs(sc scope, uids []string, rep *bus.Reply) {
	seqs := make(map[string][]uint64, len(uids))
	s.eachShard(func(sh *shard) {
		for _, u := range uids {
			for _, c := range sh.uids[u] {
				if c.state != stateClosed && sc.has(c) {
					seqs[u] = append(seqs[u], c.seq)
				}
			}
		}
	})
	for _, u := range uids {
		list, ok := seqs[u]
		if !ok || len(list) == 0 {
			continue
		}
		delete(seqs, u)
		slices.Sort(list)
		list = slices.Compact(list)
		if len(list) > maxIDsPerUID {
			list = list[:maxIDsPerUID]
		}
		ids := make([]string, len(list))
		for i, q := range list {
			ids[i] = clientid.Make(s.id, q)
		}
		rep.Named = append(rep.Named, bus.NameCount{Name: u, Count: uint64(len(ids)), Items: ids})
	}
}

// closeConnLocked closes c, after msg when it is non-empty. Caller holds
// c.sh.mu.
func (s *Server) closeConnLocked(c *conn, msg []byte, force bool) {
	if len(msg) > 0 {
		s.closeAfterLocked(c, msg, force)
		return
	}
	c.sh.closeLocked(c, ReasonCloseRequested, force)
}

// replyBudget bounds the bytes of names, ids, uids and sessions one
// gateway puts in an answer to ops 54-57, well under the bus's 1 MiB
// default message limit: a list query cuts its page there (More set, the
// next page starts after it), getAllGroupClientIdCount and
// getAllGroupUidCount stop there (More set: the caller's answer is
// truncated).
const replyBudget = 512 << 10

// allQuery answers this gateway's share of the cluster-wide "all groups"
// and "all sessions" calls (ops 54-57).
func (s *Server) allQuery(cmd *bus.Command, rep *bus.Reply) error {
	limit := int(cmd.Limit)
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	sc := s.scopeOf(cmd)
	if sc.none() {
		return nil
	}
	switch cmd.Op {
	case bus.OpClientSessions:
		return s.clientSessions(sc, cmd.Cursor, limit, rep)
	case bus.OpGroupClientCounts:
		s.groupClientCounts(sc, rep)
	case bus.OpGroupUIDCounts:
		s.groupUIDCounts(sc, rep)
	case bus.OpGroupClientLists:
		s.groupClientLists(sc, cmd.Cursor, limit, rep)
	}
	return nil
}

// clientSessions answers OpClientSessions: the ids after cursor as
// OpClientList pages them, with their sessions (those without one too,
// with an empty session), cut at replyBudget.
func (s *Server) clientSessions(sc scope, cursor string, limit int, rep *bus.Reply) error {
	if err := s.listClients(bus.OpClientList, sc, "", "", cursor, limit, rep); err != nil {
		return err
	}
	size := 0
	for i, id := range rep.Items {
		c, err := s.lookup(id)
		var sess []byte
		if err == nil {
			c.sh.mu.Lock()
			sess = c.session
			c.sh.mu.Unlock()
		}
		size += len(id) + len(sess)
		if size > replyBudget && i > 0 {
			rep.Items, rep.More = rep.Items[:i], true
			break
		}
		rep.Sessions = append(rep.Sessions, bus.ClientSession{Client: id, Session: sess})
	}
	return nil
}

// groupsInScope returns the groups of this gateway with a member in the
// scope, sorted, those after cursor only.
func (s *Server) groupsInScope(sc scope, cursor string) []string {
	set := s.distinct(func(sh *shard, add func(string)) {
		for g, members := range sh.groups {
			if g > cursor && sc.anyInSet(members) {
				add(g)
			}
		}
	})
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// groupClientCounts answers OpGroupClientCounts: every group with its
// members in the scope, by name, at most maxLimit groups and replyBudget
// bytes of names (More past them).
func (s *Server) groupClientCounts(sc scope, rep *bus.Reply) {
	groups := s.groupsInScope(sc, "")
	counts := make(map[string]uint64, len(groups))
	s.eachShard(func(sh *shard) {
		for _, g := range groups {
			counts[g] += uint64(sc.inSet(sh.groups[g]))
		}
	})
	size := 0
	for i, g := range groups {
		size += len(g)
		if i == maxLimit || size > replyBudget {
			rep.More = true
			break
		}
		if n := counts[g]; n > 0 {
			rep.Named = append(rep.Named, bus.NameCount{Name: g, Count: n})
		}
	}
}

// groupUIDCounts answers OpGroupUIDCounts: every group with bound members
// in the scope, its distinct uids here in Count and, while they fit in
// replyBudget, the uids themselves in Items (sorted), so that the caller
// can count uids on several gateways once. A group whose uids did not fit
// has Count only. At most maxLimit groups (More past them).
func (s *Server) groupUIDCounts(sc scope, rep *bus.Reply) {
	groups := s.groupsInScope(sc, "")
	if len(groups) > maxLimit {
		groups, rep.More = groups[:maxLimit], true
	}
	uids := make(map[string]map[string]struct{}, len(groups))
	s.eachShard(func(sh *shard) {
		for _, g := range groups {
			for c := range sh.groups[g] {
				if c.uid == "" || !sc.has(c) {
					continue
				}
				set := uids[g]
				if set == nil {
					set = make(map[string]struct{})
					uids[g] = set
				}
				set[c.uid] = struct{}{}
			}
		}
	})
	size := 0
	for _, g := range groups {
		set := uids[g]
		if len(set) == 0 {
			continue
		}
		nc := bus.NameCount{Name: g, Count: uint64(len(set))}
		n := len(g)
		for u := range set {
			n += len(u)
		}
		if size+n <= replyBudget {
			size += n
			nc.Items = make([]string, 0, len(set))
			for u := range set {
				nc.Items = append(nc.Items, u)
			}
			slices.Sort(nc.Items)
		}
		rep.Named = append(rep.Named, nc)
	}
}

// groupClientLists answers OpGroupClientLists: a page of the groups after
// cursor (Items, at most limit, cut at replyBudget bytes of ids) and the
// client ids of each in the scope (Named, ascending, at most maxIDsPerUID
// per group).
func (s *Server) groupClientLists(sc scope, cursor string, limit int, rep *bus.Reply) {
	groups := s.groupsInScope(sc, cursor)
	if len(groups) > limit {
		groups, rep.More = groups[:limit], true
	}
	seqs := make(map[string][]uint64, len(groups))
	s.eachShard(func(sh *shard) {
		for _, g := range groups {
			for c := range sh.groups[g] {
				if c.state != stateClosed && sc.has(c) {
					seqs[g] = append(seqs[g], c.seq)
				}
			}
		}
	})
	size := 0
	for i, g := range groups {
		list := seqs[g]
		slices.Sort(list)
		if len(list) > maxIDsPerUID {
			list = list[:maxIDsPerUID]
		}
		size += len(g) + len(list)*clientid.Len
		if size > replyBudget && i > 0 {
			groups, rep.More = groups[:i], true
			break
		}
		ids := make([]string, len(list))
		for j, q := range list {
			ids[j] = clientid.Make(s.id, q)
		}
		rep.Named = append(rep.Named, bus.NameCount{Name: g, Count: uint64(len(ids)), Items: ids})
	}
	rep.Items = groups
}
