package gateway

import (
	"slices"
	"sort"
	"time"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
)

// Page limits of list queries (the same as the API's).
const (
	defaultLimit = 100
	maxLimit     = 10000
)

// query answers this gateway's share of a cluster-wide query.
func (s *Server) query(cmd *bus.Command, rep *bus.Reply) error {
	limit := int(cmd.Limit)
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	group := cmd.Arg
	if group == "" && len(cmd.Groups) > 0 {
		group = cmd.Groups[0]
	}
	uid := cmd.Arg
	if uid == "" && len(cmd.UIDs) > 0 {
		uid = cmd.UIDs[0]
	}
	sc := s.scopeOf(cmd)
	if sc.none() && cmd.Op != bus.OpStats {
		return nil // no listener of the scope here: nothing to count or list
	}
	switch cmd.Op {
	case bus.OpClientCount:
		rep.Count = uint64(s.scopedConnCount(sc))
	case bus.OpClientCountByGroup:
		s.eachShard(func(sh *shard) { rep.Count += uint64(sc.inSet(sh.groups[group])) })
	case bus.OpIsUIDOnline:
		s.eachShard(func(sh *shard) { rep.Found = rep.Found || sc.anyInList(sh.uids[uid]) })
	case bus.OpUIDCount:
		rep.Count = uint64(len(s.distinct(func(sh *shard, add func(string)) {
			for u, list := range sh.uids {
				if sc.anyInList(list) {
					add(u)
				}
			}
		})))
	case bus.OpUIDCountByGroup:
		rep.Count = uint64(len(s.distinct(func(sh *shard, add func(string)) {
			for c := range sh.groups[group] {
				if c.uid != "" && sc.has(c) {
					add(c.uid)
				}
			}
		})))
	case bus.OpClientList, bus.OpClientListByGroup, bus.OpClientListByUID:
		return s.listClients(cmd.Op, sc, group, uid, cmd.Cursor, limit, rep)
	case bus.OpUIDList:
		page(s.distinct(func(sh *shard, add func(string)) {
			for u, list := range sh.uids {
				if u > cmd.Cursor && sc.anyInList(list) {
					add(u)
				}
			}
		}), limit, rep)
	case bus.OpUIDListByGroup:
		page(s.distinct(func(sh *shard, add func(string)) {
			for c := range sh.groups[group] {
				if c.uid != "" && c.uid > cmd.Cursor && sc.has(c) {
					add(c.uid)
				}
			}
		}), limit, rep)
	case bus.OpGroupList:
		page(s.distinct(func(sh *shard, add func(string)) {
			for g, set := range sh.groups {
				if g > cmd.Cursor && sc.anyInSet(set) {
					add(g)
				}
			}
		}), limit, rep)
	case bus.OpGroupSessions:
		s.eachShard(func(sh *shard) {
			for c := range sh.groups[group] {
				if sc.has(c) {
					rep.Sessions = append(rep.Sessions, bus.ClientSession{Client: c.id(s.id), Session: c.session})
				}
			}
		})
	case bus.OpStats:
		b, err := s.processStats(time.Now())
		if err != nil {
			return codeErr(bus.ErrCodeInternal, "stats: %v", err)
		}
		rep.Stats = b
	default:
		return codeErr(bus.ErrCodeUnknownOp, "unknown op %d", cmd.Op)
	}
	return nil
}

// eachShard calls fn for every shard with its lock held.
func (s *Server) eachShard(fn func(sh *shard)) {
	for _, sh := range s.shards {
		sh.mu.Lock()
		fn(sh)
		sh.mu.Unlock()
	}
}

// distinct collects the strings fn adds, across shards, without repeats.
func (s *Server) distinct(fn func(sh *shard, add func(string))) map[string]struct{} {
	set := make(map[string]struct{})
	add := func(v string) { set[v] = struct{}{} }
	s.eachShard(func(sh *shard) { fn(sh, add) })
	return set
}

// page puts the smallest limit items of set in rep.Items, sorted.
func page(set map[string]struct{}, limit int, rep *bus.Reply) {
	items := make([]string, 0, len(set))
	for v := range set {
		items = append(items, v)
	}
	sort.Strings(items)
	if len(items) > limit {
		items = items[:limit]
		rep.More = true
	}
	rep.Items = items
}

// listClients answers a client-id page: ids after cursor, ascending.
func (s *Server) listClients(op bus.Op, sc scope, group, uid, cursor string, limit int, rep *bus.Reply) error {
	after := uint64(0)
	if cursor != "" {
		gw, seq, err := clientid.Parse(cursor)
		if err != nil {
			return codeErr(bus.ErrCodeInvalidRequest, "cursor: %v", err)
		}
		switch {
		case gw > s.id:
			return nil // every id of this gateway sorts before the cursor
		case gw == s.id:
			after = seq
		}
	}
	var seqs []uint64
	s.eachShard(func(sh *shard) {
		n := 0
		take := func(c *conn) bool {
			if c.state == stateClosed || c.seq <= after || !sc.has(c) {
				return true
			}
			seqs = append(seqs, c.seq)
			n++
			return n <= limit
		}
		switch op {
		case bus.OpClientList:
			for _, c := range sh.order[sh.orderIndex(after+1):] {
				if !take(c) {
					break
				}
			}
		case bus.OpClientListByGroup:
			for c := range sh.groups[group] {
				take(c)
			}
		case bus.OpClientListByUID:
			for _, c := range sh.uids[uid] {
				take(c)
			}
		}
	})
	slices.Sort(seqs)
	if len(seqs) > limit {
		seqs = seqs[:limit]
		rep.More = true
	}
	rep.Items = make([]string, len(seqs))
	for i, q := range seqs {
		rep.Items[i] = clientid.Make(s.id, q)
	}
	return nil
}
