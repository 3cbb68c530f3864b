package gateway

import (
	"bytes"
	"encoding/json"
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
		for _, g := range groupsOf(cmd) {
			for _, sh := range s.shards {
				sh.mu.Lock()
				sh.ungroupLocked(g)
				sh.mu.Unlock()
			}
		}
		return nil
	case bus.OpCloseUID:
		return s.closeUID(cmd)
	case bus.OpIsUIDsOnline, bus.OpClientCountByGroups, bus.OpClientListByUIDs:
		return s.batchQuery(cmd, rep)
	case bus.OpIsOnline, bus.OpClientInfo, bus.OpCloseClient, bus.OpBindUID, bus.OpUnbindUID,
		bus.OpJoinGroup, bus.OpLeaveGroup, bus.OpSetSession, bus.OpUpdateSession,
		bus.OpDeleteSession, bus.OpGetSession, bus.OpProtect:
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

// clientOp runs an operation on one client of this gateway.
func (s *Server) clientOp(cmd *bus.Command, rep *bus.Reply) error {
	if len(cmd.Clients) != 1 {
		return codeErr(bus.ErrCodeInvalidRequest, "%s needs exactly one client", cmd.Op)
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
	defer sh.mu.Unlock()
	if c.state != stateOpen {
		if cmd.Op == bus.OpIsOnline {
			return nil
		}
		if cmd.Op != bus.OpCloseClient {
			return errNotFound
		}
	}
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
	case bus.OpCloseClient:
		s.closeConnLocked(c, cmd.Data, cmd.Flag)
	case bus.OpBindUID:
		if cmd.Arg == "" {
			return codeErr(bus.ErrCodeInvalidRequest, "uid must not be empty")
		}
		sh.bindLocked(c, cmd.Arg)
	case bus.OpUnbindUID:
		sh.bindLocked(c, "")
	case bus.OpJoinGroup:
		if cmd.Arg == "" {
			return codeErr(bus.ErrCodeInvalidRequest, "group must not be empty")
		}
		if err := s.checkJoin(c, cmd.Arg); err != nil {
			return err
		}
		sh.joinLocked(c, cmd.Arg)
	case bus.OpLeaveGroup:
		if cmd.Arg == "" {
			return codeErr(bus.ErrCodeInvalidRequest, "group must not be empty")
		}
		sh.leaveLocked(c, cmd.Arg)
	case bus.OpSetSession:
		return setSessionLocked(c, cmd.Data)
	case bus.OpUpdateSession:
		return updateSessionLocked(c, cmd.Data)
	case bus.OpDeleteSession:
		c.session = nil
	case bus.OpGetSession:
		rep.Found = true
		rep.Session = c.session
	case bus.OpProtect:
		c.protectLocked(cmd.Flag)
	}
	return nil
}

// setSessionLocked replaces c's session with the JSON object data.
func setSessionLocked(c *conn, data []byte) error {
	obj, err := decodeObject(data)
	if err != nil {
		return err
	}
	if len(obj) == 0 {
		c.session = nil
		return nil
	}
	c.session = bytes.Clone(bytes.TrimSpace(data))
	return nil
}

// updateSessionLocked shallow-merges the JSON object data into c's session.
func updateSessionLocked(c *conn, data []byte) error {
	upd, err := decodeObject(data)
	if err != nil {
		return err
	}
	if len(upd) == 0 {
		return nil
	}
	cur, err := decodeObject(c.session)
	if err != nil {
		cur = map[string]json.RawMessage{}
	}
	if cur == nil {
		cur = make(map[string]json.RawMessage, len(upd))
	}
	for k, v := range upd {
		cur[k] = v
	}
	out, err := json.Marshal(cur)
	if err != nil {
		return codeErr(bus.ErrCodeInternal, "session: %v", err)
	}
	c.session = out
	return nil
}

func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, codeErr(bus.ErrCodeInvalidRequest, "session must be a JSON object: %v", err)
	}
	if m == nil {
		return nil, codeErr(bus.ErrCodeInvalidRequest, "session must be a JSON object, not null")
	}
	return m, nil
}

// frameCache encodes a message once per listener and compression window
// during a fan-out: without context takeover a compressed message is the
// same bytes for every connection with the same window.
type frameCache struct {
	msg    []byte
	binary bool
	keys   []frameKey
	frames [][]byte
	err    error
}

type frameKey struct {
	l    *listener
	bits uint8 // deflate window bits; 0: uncompressed
}

// get returns c's frame of the message, nil when it cannot be encoded for
// c's listener (the error is kept in fc.err). Caller holds c.sh.mu.
func (fc *frameCache) get(c *conn) []byte {
	k := frameKey{l: c.l, bits: c.deflateBits(len(fc.msg))}
	for i, x := range fc.keys {
		if x == k {
			return fc.frames[i]
		}
	}
	var f []byte
	var err error
	if k.bits != 0 {
		f, err = k.l.deflateFrame(fc.msg, fc.binary, k.bits)
	} else {
		f, err = k.l.frame(fc.msg, fc.binary)
	}
	if err != nil {
		fc.err = err
	}
	fc.keys = append(fc.keys, k)
	fc.frames = append(fc.frames, f)
	return f
}

func (s *Server) sendToClients(cmd *bus.Command) error {
	fc := frameCache{msg: cmd.Data, binary: cmd.Flag}
	for _, id := range cmd.Clients {
		c, err := s.lookup(id)
		if err != nil {
			continue // offline or not ours: a send to it is a no-op
		}
		sh := c.sh
		sh.mu.Lock()
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
	fc := frameCache{msg: cmd.Data, binary: cmd.Flag}
	send := func(sh *shard, c *conn) {
		if _, skip := without[c.seq]; skip {
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
