package gateway

import (
	"github.com/gatework/gatework/bus"
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

// closeConnLocked closes c, after msg when it is non-empty. Caller holds
// c.sh.mu.
func (s *Server) closeConnLocked(c *conn, msg []byte, force bool) {
	if len(msg) > 0 {
		s.closeAfterLocked(c, msg, force)
		return
	}
	c.sh.closeLocked(c, ReasonCloseRequested, force)
}
