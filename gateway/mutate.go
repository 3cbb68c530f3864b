package gateway

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/gatework/gatework/bus"
)

// Limits of what a mutation may carry, the same for a worker's ack action
// and an API command (docs/api.md, "Input rules").
const (
	// MaxNameBytes bounds a uid or a group name, in bytes.
	MaxNameBytes = 1024
	// MaxSessionBytes bounds a session (a JSON object), in bytes, also
	// after an update merged into it.
	MaxSessionBytes = 64 << 10
)

// mutKind is what a mutation changes.
type mutKind uint8

// The mutations of one client.
const (
	mutBind mutKind = iota + 1
	mutUnbind
	mutJoin
	mutLeave
	mutSetSession
	mutUpdateSession
	mutDeleteSession
	mutClose
	mutProtect
	mutPauseRecv
	mutResumeRecv
	mutConfirm
	mutSetBinary
)

// mutation is one change to one client, as a worker's ack action and an
// API command both ask for it: the two are translated to a mutation
// (mutationOfAction, mutationOfCommand), checked by check and applied by
// Server.mutateLocked, so that both have one implementation and one
// validation.
type mutation struct {
	kind mutKind
	arg  string // bind: uid; join, leave: group
	data []byte // set, update session: JSON object; close: final message
	flag bool   // close: force; protect, setBinary: on
}

// mutationOfAction returns the mutation of a worker's action, false for
// the actions that are not one (send, reject, unknown).
func mutationOfAction(a *bus.Action) (mutation, bool) {
	m := mutation{arg: a.Arg, data: a.Data, flag: a.Flag}
	switch a.Type {
	case bus.ActionBindUID:
		m.kind = mutBind
	case bus.ActionUnbindUID:
		m.kind = mutUnbind
	case bus.ActionJoinGroup:
		m.kind = mutJoin
	case bus.ActionLeaveGroup:
		m.kind = mutLeave
	case bus.ActionSetSession:
		m.kind = mutSetSession
	case bus.ActionUpdateSession:
		m.kind = mutUpdateSession
	case bus.ActionDeleteSession:
		m.kind = mutDeleteSession
	case bus.ActionClose:
		m.kind = mutClose
	case bus.ActionProtect:
		m.kind = mutProtect
	case bus.ActionPauseRecv:
		m.kind = mutPauseRecv
	case bus.ActionResumeRecv:
		m.kind = mutResumeRecv
	case bus.ActionConfirm:
		m.kind = mutConfirm
	case bus.ActionSetBinary:
		m.kind = mutSetBinary
	default:
		return mutation{}, false
	}
	return m, true
}

// mutationOfCommand returns the mutation of a client-addressed command,
// false for the ops that are not one (queries, sends).
func mutationOfCommand(cmd *bus.Command) (mutation, bool) {
	m := mutation{arg: cmd.Arg, data: cmd.Data, flag: cmd.Flag}
	switch cmd.Op {
	case bus.OpBindUID:
		m.kind = mutBind
	case bus.OpUnbindUID:
		m.kind = mutUnbind
	case bus.OpJoinGroup:
		m.kind = mutJoin
	case bus.OpLeaveGroup:
		m.kind = mutLeave
	case bus.OpSetSession:
		m.kind = mutSetSession
	case bus.OpUpdateSession:
		m.kind = mutUpdateSession
	case bus.OpDeleteSession:
		m.kind = mutDeleteSession
	case bus.OpCloseClient:
		m.kind = mutClose
	case bus.OpProtect:
		m.kind = mutProtect
	case bus.OpPauseRecv:
		m.kind = mutPauseRecv
	case bus.OpResumeRecv:
		m.kind = mutResumeRecv
	case bus.OpConfirm:
		m.kind = mutConfirm
	case bus.OpSetBinary:
		m.kind = mutSetBinary
	default:
		return mutation{}, false
	}
	return m, true
}

// check validates m on its own (no client needed): a uid or group name is
// 1 to MaxNameBytes bytes of UTF-8; a session is a JSON object of at most
// MaxSessionBytes (empty bytes: an empty session).
func (m *mutation) check() error {
	switch m.kind {
	case mutBind:
		return checkName("uid", m.arg)
	case mutJoin, mutLeave:
		return checkName("group", m.arg)
	case mutSetSession, mutUpdateSession:
		if len(m.data) > MaxSessionBytes {
			return codeErr(bus.ErrCodeInvalidRequest, "session of %d bytes is over %d", len(m.data), MaxSessionBytes)
		}
		_, err := decodeObject(m.data)
		return err
	}
	return nil
}

// checkName validates a uid or a group name.
func checkName(what, name string) error {
	switch {
	case name == "":
		return codeErr(bus.ErrCodeInvalidRequest, "%s must not be empty", what)
	case len(name) > MaxNameBytes:
		return codeErr(bus.ErrCodeInvalidRequest, "%s of %d bytes is over %d", what, len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return codeErr(bus.ErrCodeInvalidRequest, "%s is not valid UTF-8", what)
	}
	return nil
}

// Effects of a mutation that its caller completes after it releases the
// shard lock.
const (
	// effSubscribe: a bind or join may have made a new subscription,
	// which must reach the NATS server before the client sees anything
	// that follows (interest.go).
	effSubscribe uint8 = 1 << iota
	// effRx: the client's receive hold changed; Server.applyRx turns
	// reading off or on (rx.go).
	effRx
)

// mutateLocked applies m, which passed m.check, to c. It returns the
// effects left to complete once the lock is released. A client that is closing or
// closed still takes uid, group and session changes (the close event must
// see them); a forced close cuts a graceful one short. Which states a caller accepts is the caller's: an API command
// answers not_found for a closed client, a worker's action applies (see
// Server.clientOp and Server.applyActions). Caller holds c.sh.mu.
func (s *Server) mutateLocked(c *conn, m *mutation) (uint8, error) {
	sh := c.sh
	switch m.kind {
	case mutBind:
		sh.bindLocked(c, m.arg)
		return effSubscribe, nil
	case mutUnbind:
		sh.bindLocked(c, "")
	case mutJoin:
		if err := s.checkJoin(c, m.arg); err != nil {
			return 0, err
		}
		sh.joinLocked(c, m.arg)
		return effSubscribe, nil
	case mutLeave:
		sh.leaveLocked(c, m.arg)
	case mutSetSession:
		return 0, setSessionLocked(c, m.data)
	case mutUpdateSession:
		return 0, updateSessionLocked(c, m.data)
	case mutDeleteSession:
		c.session = nil
	case mutClose:
		s.closeConnLocked(c, m.data, m.flag)
	case mutProtect:
		c.protectLocked(m.flag)
	case mutPauseRecv, mutResumeRecv, mutConfirm:
		return s.holdLocked(c, m.kind)
	case mutSetBinary:
		c.binary = m.flag
	}
	return 0, nil
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

// updateSessionLocked shallow-merges the JSON object data into c's
// session; a merge over MaxSessionBytes changes nothing.
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
	if len(out) > MaxSessionBytes {
		return codeErr(bus.ErrCodeInvalidRequest, "merged session of %d bytes is over %d", len(out), MaxSessionBytes)
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
