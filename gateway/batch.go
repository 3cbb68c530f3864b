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
	var victims []*conn
	for _, sh := range s.shards {
		sh.mu.Lock()
		victims = append(victims[:0], sh.uids[cmd.Arg]...)
		for _, c := range victims {
			s.closeConnLocked(c, cmd.Data, cmd.Flag)
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
	if cmd.Op == bus.OpClientListByUIDs {
		s.clientsByUIDs(names, rep)
		return nil
	}
	counts := make(map[string]uint64, len(names))
	s.eachShard(func(sh *shard) {
		for _, n := range names {
			if cmd.Op == bus.OpIsUIDsOnline {
				counts[n] += uint64(len(sh.uids[n]))
			} else {
				counts[n] += uint64(len(sh.groups[n]))
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
func (s *Server) clientsByUIDs(uids []string, rep *bus.Reply) {
	seqs := make(map[string][]uint64, len(uids))
	s.eachShard(func(sh *shard) {
		for _, u := range uids {
			for _, c := range sh.uids[u] {
				if c.state != stateClosed {
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
