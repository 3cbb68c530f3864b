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

// closeConnLocked closes c, after msg when it is non-empty. Caller holds
// c.sh.mu.
func (s *Server) closeConnLocked(c *conn, msg []byte, force bool) {
	if len(msg) > 0 {
		s.closeAfterLocked(c, msg, force)
		return
	}
	c.sh.closeLocked(c, ReasonCloseRequested, force)
}
