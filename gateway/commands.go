package gateway

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
)

// errCode is an error that carries a bus error code.
type errCode struct {
	code string
	msg  string
}

func (e *errCode) Error() string { return e.msg }

func codeErr(code, format string, args ...any) error {
	return &errCode{code: code, msg: fmt.Sprintf(format, args...)}
}

var errNotFound = &errCode{code: bus.ErrCodeNotFound, msg: "client not found"}

// onCommand executes a Command from the bus and answers it when the
// message has a reply subject.
func (s *Server) onCommand(m *nats.Msg) {
	var cmd bus.Command
	rep := bus.Reply{Gateway: s.id}
	query := m.Subject == s.subj.Query()
	if !query {
		s.interest.received.Add(1)
	}
	err := bus.DecodeCommand(m.Data, &cmd)
	if err == nil {
		err = s.execute(&cmd, &rep)
		// Subscriptions a bind or join made are issued before the reply
		// on the same connection: see interest.go.
		s.interest.sync()
	} else {
		s.stats.badCommands.Add(1)
		err = codeErr(bus.ErrCodeInvalidRequest, "malformed command: %v", err)
	}
	if err != nil {
		var ec *errCode
		if errors.As(err, &ec) {
			rep.ErrorCode, rep.Error = ec.code, ec.msg
		} else {
			rep.ErrorCode, rep.Error = bus.ErrCodeInternal, err.Error()
		}
	}
	if m.Reply == "" {
		return
	}
	if query {
		rep.Peers = s.peers()
	}
	bp := encodePool.Get().(*[]byte)
	buf := bus.AppendReply((*bp)[:0], &rep)
	if err := s.nc.Publish(m.Reply, buf); err != nil {
		s.log.Warn("reply not sent", "op", cmd.Op.String(), "err", err)
	}
	*bp = buf
	if cap(buf) <= 1<<20 {
		encodePool.Put(bp)
	}
}

// peers returns the live gateways this one knows, itself included.
func (s *Server) peers() []string {
	live := s.members.Live()
	for _, g := range live {
		if g == s.id {
			return live
		}
	}
	return append(live, s.id)
}

// execute runs cmd against this gateway's connections and fills rep.
func (s *Server) execute(cmd *bus.Command, rep *bus.Reply) error {
	switch cmd.Op {
	case bus.OpSendToClient:
		if s.refuseSend() {
			return errOverloaded
		}
		return s.sendToClients(cmd)
	case bus.OpSendToUID, bus.OpSendToGroup, bus.OpSendToAll:
		if !s.interest.firstCopy(cmd.MsgID) {
			return nil // another copy of a send routed on several subjects
		}
		if s.refuseSend() {
			return errOverloaded
		}
		return s.broadcast(cmd)
	case bus.OpUngroup:
		sc := s.scopeOf(cmd)
		for _, g := range groupsOf(cmd) {
			for _, sh := range s.shards {
				sh.mu.Lock()
				if sc.on {
					for c := range sh.groups[g] {
						if sc.has(c) {
							sh.leaveLocked(c, g)
						}
					}
				} else {
					sh.ungroupLocked(g)
				}
				sh.mu.Unlock()
			}
		}
		return nil
	case bus.OpCloseUID:
		return s.closeUID(cmd)
	case bus.OpIsUIDsOnline, bus.OpClientCountByGroups, bus.OpClientListByUIDs:
		return s.batchQuery(cmd, rep)
	case bus.OpClientSessions, bus.OpGroupClientCounts, bus.OpGroupUIDCounts, bus.OpGroupClientLists:
		return s.allQuery(cmd, rep)
	case bus.OpIsOnline, bus.OpClientInfo, bus.OpCloseClient, bus.OpBindUID, bus.OpUnbindUID,
		bus.OpJoinGroup, bus.OpLeaveGroup, bus.OpSetSession, bus.OpUpdateSession,
		bus.OpDeleteSession, bus.OpGetSession, bus.OpProtect,
		bus.OpPauseRecv, bus.OpResumeRecv, bus.OpConfirm, bus.OpSetBinary:
		return s.clientOp(cmd, rep)
	}
	return s.query(cmd, rep)
}

// groupsOf returns the groups a command names, in Groups and Arg.
func groupsOf(cmd *bus.Command) []string {
	if cmd.Arg != "" && !dup(cmd.Groups, cmd.Arg) {
		return append(cmd.Groups[:len(cmd.Groups):len(cmd.Groups)], cmd.Arg)
	}
	return cmd.Groups
}

// lookup returns the open connection named by id on this gateway.
func (s *Server) lookup(id string) (*conn, error) {
	gw, seq, err := clientid.Parse(id)
	if err != nil {
		return nil, codeErr(bus.ErrCodeInvalidClient, "%v", err)
	}
	if gw != s.id {
		return nil, errNotFound
	}
	sh := s.shards[seq%uint64(len(s.shards))]
	sh.mu.Lock()
	c := sh.conns[seq]
	sh.mu.Unlock()
	if c == nil {
		return nil, errNotFound
	}
	return c, nil
}

// clientOp runs an operation on one client of this gateway: a query of
// it, or a mutation (mutate.go, the same as a worker's action).
func (s *Server) clientOp(cmd *bus.Command, rep *bus.Reply) error {
	if len(cmd.Clients) != 1 {
		return codeErr(bus.ErrCodeInvalidRequest, "%s needs exactly one client", cmd.Op)
	}
	m, isMutation := mutationOfCommand(cmd)
	if isMutation {
		// Bad input is answered as such whatever the client's state.
		if err := m.check(); err != nil {
			return err
		}
	}
	c, err := s.lookup(cmd.Clients[0])
	if err != nil {
		if err == errNotFound && cmd.Op == bus.OpIsOnline {
			return nil
		}
		return err
	}
	sh := c.sh
	sh.mu.Lock()
	if !s.scopeOf(cmd).has(c) {
		// Out of the command's listener scope: as if it did not exist.
		sh.mu.Unlock()
		if cmd.Op == bus.OpIsOnline {
			return nil
		}
		return errNotFound
	}
	if c.state != stateOpen && cmd.Op != bus.OpCloseClient {
		// A closing client still takes a close (a forced one cuts its
		// graceful close short); nothing else.
		sh.mu.Unlock()
		if cmd.Op == bus.OpIsOnline {
			return nil
		}
		return errNotFound
	}
	if isMutation {
		eff, err := s.mutateLocked(c, &m)
		sh.mu.Unlock()
		sh.signal()
		if eff&effRx != 0 {
			s.applyRx(c)
		}
		return err
	}
	defer sh.mu.Unlock()
	switch cmd.Op {
	case bus.OpIsOnline:
		rep.Found = true
	case bus.OpClientInfo:
		fields := cmd.Fields
		if fields == 0 {
			fields = bus.FieldAll
		}
		st := c.snapshot(s.id, fields)
		rep.State = &st
		rep.Found = true
	case bus.OpGetSession:
		rep.Found = true
		rep.Session = c.session
	}
	return nil
}

// frameCache encodes a message once per listener and compression window
// during a fan-out: without context takeover a compressed message is the
// same bytes for every connection with the same window. A structured
// send's value is encoded once per codec first (valueCache).
type frameCache struct {
	msg    []byte
	binary bool
	value  *valueCache // structured sends only
	keys   []frameKey
	frames [][]byte
	err    error
}

// newFrameCache returns the frame cache of a send command.
func (s *Server) newFrameCache(cmd *bus.Command) frameCache {
	fc := frameCache{msg: cmd.Data, binary: cmd.Flag}
	if cmd.Structured {
		fc.value = &valueCache{neutral: cmd.Data}
	}
	return fc
}

type frameKey struct {
	l      *listener
	bits   uint8 // deflate window bits; 0: uncompressed
	binary bool  // a binary frame whatever the message holds (SetBinary)
}

// get returns c's frame of the message, nil when it cannot be encoded for
// c's listener (the error is kept in fc.err). Caller holds c.sh.mu.
func (fc *frameCache) get(c *conn) []byte {
	msg := fc.msg
	if fc.value != nil {
		m, err := fc.value.forListener(c.l)
		if err != nil {
			fc.err = err
			return nil
		}
		msg = m
	}
	k := frameKey{l: c.l, bits: c.deflateBits(len(msg)), binary: fc.binary || c.binary}
	for i, x := range fc.keys {
		if x == k {
			return fc.frames[i]
		}
	}
	var f []byte
	var err error
	if k.bits != 0 {
		f, err = k.l.deflateFrame(msg, k.binary, k.bits)
	} else {
		f, err = k.l.frame(msg, k.binary)
	}
	if err != nil {
		fc.err = err
	}
	fc.keys = append(fc.keys, k)
	fc.frames = append(fc.frames, f)
	return f
}

func (s *Server) sendToClients(cmd *bus.Command) error {
	fc := s.newFrameCache(cmd)
	sc := s.scopeOf(cmd)
	for _, id := range cmd.Clients {
		c, err := s.lookup(id)
		if err != nil {
			continue // offline or not ours: a send to it is a no-op
		}
		sh := c.sh
		sh.mu.Lock()
		if !sc.has(c) {
			sh.mu.Unlock()
			continue
		}
		if f := fc.get(c); f != nil {
			sh.enqueueLocked(c, f)
			s.press.sendOut += int64(len(f))
		}
		sh.mu.Unlock()
		sh.signal()
	}
	if fc.err != nil {
		return codeErr(bus.ErrCodeInvalidRequest, "%v", fc.err)
	}
	return nil
}

// broadcast sends cmd.Data to the uids, groups or everyone on this gateway,
// each connection once, skipping cmd.Without.
func (s *Server) broadcast(cmd *bus.Command) error {
	var without map[uint64]struct{}
	for _, id := range cmd.Without {
		gw, seq, err := clientid.Parse(id)
		if err == nil && gw == s.id {
			if without == nil {
				without = make(map[uint64]struct{}, len(cmd.Without))
			}
			without[seq] = struct{}{}
		}
	}
	fc := s.newFrameCache(cmd)
	sc := s.scopeOf(cmd)
	if sc.none() {
		return nil
	}
	send := func(sh *shard, c *conn) {
		if _, skip := without[c.seq]; skip || !sc.has(c) {
			return
		}
		if f := fc.get(c); f != nil {
			sh.enqueueLocked(c, f)
			s.press.sendOut += int64(len(f))
		}
	}
	groups := groupsOf(cmd)
	uids := cmd.UIDs
	if cmd.Op == bus.OpSendToUID {
		uids = distinctStrings(uids)
	}
	for _, sh := range s.shards {
		sh.mu.Lock()
		switch cmd.Op {
		case bus.OpSendToAll:
			for _, c := range sh.conns {
				send(sh, c)
			}
		case bus.OpSendToUID:
			for _, uid := range uids {
				for _, c := range sh.uids[uid] {
					send(sh, c)
				}
			}
		case bus.OpSendToGroup:
			if len(groups) == 1 {
				for c := range sh.groups[groups[0]] {
					send(sh, c)
				}
				break
			}
			seen := make(map[*conn]struct{})
			for _, g := range groups {
				for c := range sh.groups[g] {
					if _, ok := seen[c]; !ok {
						seen[c] = struct{}{}
						send(sh, c)
					}
				}
			}
		}
		sh.mu.Unlock()
		sh.signal()
	}
	if fc.err != nil {
		return codeErr(bus.ErrCodeInvalidRequest, "%v", fc.err)
	}
	return nil
}

// distinctStrings returns list without repeats, in order, once for the
// whole fan-out (a send to thousands of uids must not cost their square).
func distinctStrings(list []string) []string {
	if len(list) < 2 {
		return list
	}
	seen := make(map[string]struct{}, len(list))
	out := make([]string, 0, len(list))
	for _, v := range list {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}

func dup(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
