package bus

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// AppendEventBatch appends the encoding of m to b and returns the result.
func AppendEventBatch(b []byte, m *EventBatch) []byte {
	b = appendVarint(b, 1, uint64(m.Version))
	b = appendString(b, 2, m.Gateway)
	b = appendVarint(b, 3, m.Delivery)
	b = appendString(b, 4, m.Client)
	b = appendMessage(b, 5, func(b []byte) []byte { return AppendClientState(b, &m.State) })
	for i := range m.Events {
		e := &m.Events[i]
		b = appendMessage(b, 6, func(b []byte) []byte { return appendEvent(b, e) })
	}
	b = appendVarint(b, 7, uint64(m.Attempt))
	return b
}

// DecodeEventBatch decodes buf into m, which is reset first. Byte fields of
// m alias buf.
func DecodeEventBatch(buf []byte, m *EventBatch) error {
	*m = EventBatch{}
	return mergeEventBatch(buf, m)
}

// DecodeEventBatchInto is DecodeEventBatch that keeps the capacity of
// m.Events and m.State.Groups for the decoded items: a caller that hands it a batch with room for a few
// events and groups decodes a typical batch without allocating them.
func DecodeEventBatchInto(buf []byte, m *EventBatch) error {
	*m = EventBatch{Events: m.Events[:0], State: ClientState{Groups: m.State.Groups[:0]}}
	return mergeEventBatch(buf, m)
}

// DecodeEventBatchHeader reads the version, delivery and attempt of the
// EventBatch buf without decoding the rest: its client state and events
// are checked for framing only (their length fits buf), not decoded. A
// worker reads this much of a batch when it takes it, and decodes the
// whole batch with DecodeEventBatch when it runs it. The error wraps
// ErrMalformed.
func DecodeEventBatchHeader(buf []byte) (version uint32, delivery uint64, attempt uint32, err error) {
	err = walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.u32(&version)
		case 3:
			return f.u64(&delivery)
		case 7:
			return f.u32(&attempt)
		}
		return nil
	})
	return version, delivery, attempt, err
}

// mergeEventBatch decodes buf into m without resetting it.
func mergeEventBatch(buf []byte, m *EventBatch) error {
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.u32(&m.Version)
		case 2:
			return f.str(&m.Gateway)
		case 3:
			return f.u64(&m.Delivery)
		case 4:
			return f.str(&m.Client)
		case 5:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			return mergeClientState(f.b, &m.State)
		case 6:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			if len(m.Events) >= MaxListItems {
				return fmt.Errorf("%w: too many events", ErrMalformed)
			}
			m.Events = append(m.Events, Event{})
			return decodeEvent(f.b, &m.Events[len(m.Events)-1])
		case 7:
			return f.u32(&m.Attempt)
		}
		return nil
	})
}

// AppendClientState appends the encoding of s to b.
func AppendClientState(b []byte, s *ClientState) []byte {
	b = appendString(b, 1, s.RemoteIP)
	b = appendVarint(b, 2, uint64(s.RemotePort))
	b = appendString(b, 3, s.UID)
	b = appendStrings(b, 4, s.Groups)
	b = appendBytes(b, 5, s.Session)
	b = appendString(b, 6, s.Listener)
	b = appendString(b, 7, s.Protocol)
	b = appendVarint(b, 8, uint64(s.ConnectedUnixMs))
	b = appendVarint(b, 9, uint64(s.LastActiveUnixMs))
	b = appendVarint(b, 10, s.BytesIn)
	b = appendVarint(b, 11, s.BytesOut)
	b = appendVarint(b, 12, s.MessagesIn)
	b = appendVarint(b, 13, s.MessagesOut)
	b = appendString(b, 14, s.Gateway)
	b = appendBool(b, 15, s.Protected)
	b = appendString(b, 50, s.Codec)
	return b
}

// DecodeClientState decodes buf into s, which is reset first.
func DecodeClientState(buf []byte, s *ClientState) error {
	*s = ClientState{}
	return mergeClientState(buf, s)
}

// mergeClientState decodes buf into s without resetting it: a message
// field that occurs twice is merged, as protobuf decoders do.
func mergeClientState(buf []byte, s *ClientState) error {
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.str(&s.RemoteIP)
		case 2:
			return f.u32(&s.RemotePort)
		case 3:
			return f.str(&s.UID)
		case 4:
			return f.appendStr(&s.Groups)
		case 5:
			return f.bytes(&s.Session)
		case 6:
			return f.str(&s.Listener)
		case 7:
			return f.str(&s.Protocol)
		case 8:
			return f.i64(&s.ConnectedUnixMs)
		case 9:
			return f.i64(&s.LastActiveUnixMs)
		case 10:
			return f.u64(&s.BytesIn)
		case 11:
			return f.u64(&s.BytesOut)
		case 12:
			return f.u64(&s.MessagesIn)
		case 13:
			return f.u64(&s.MessagesOut)
		case 14:
			return f.str(&s.Gateway)
		case 15:
			return f.boolean(&s.Protected)
		case 50:
			return f.str(&s.Codec)
		}
		return nil
	})
}

func appendEvent(b []byte, e *Event) []byte {
	b = appendVarint(b, 1, uint64(e.Type))
	b = appendBytes(b, 2, e.Data)
	b = appendBool(b, 3, e.Binary)
	if e.Request != nil {
		r := e.Request
		b = appendMessage(b, 4, func(b []byte) []byte { return appendHTTPRequest(b, r) })
	}
	b = appendString(b, 5, e.CloseReason)
	b = appendVarint(b, 6, uint64(e.TimeUnixMs))
	b = appendBool(b, 45, e.BeforeUpgrade)
	b = appendBytes(b, 50, e.Value)
	b = appendString(b, 51, e.Error)
	return b
}

func decodeEvent(buf []byte, e *Event) error {
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			var v int32
			err := f.i32(&v)
			e.Type = EventType(v)
			return err
		case 2:
			return f.bytes(&e.Data)
		case 3:
			return f.boolean(&e.Binary)
		case 4:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			if e.Request == nil {
				e.Request = &HTTPRequest{}
			}
			return decodeHTTPRequest(f.b, e.Request)
		case 5:
			return f.str(&e.CloseReason)
		case 6:
			return f.i64(&e.TimeUnixMs)
		case 45:
			return f.boolean(&e.BeforeUpgrade)
		case 50:
			return f.bytes(&e.Value)
		case 51:
			return f.str(&e.Error)
		}
		return nil
	})
}

func appendHTTPRequest(b []byte, r *HTTPRequest) []byte {
	b = appendString(b, 1, r.Method)
	b = appendString(b, 2, r.Path)
	b = appendString(b, 3, r.Query)
	for i := range r.Headers {
		h := &r.Headers[i]
		b = appendMessage(b, 4, func(b []byte) []byte {
			b = appendString(b, 1, h.Name)
			return appendString(b, 2, h.Value)
		})
	}
	b = appendString(b, 5, r.Host)
	return b
}

func decodeHTTPRequest(buf []byte, r *HTTPRequest) error {
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.str(&r.Method)
		case 2:
			return f.str(&r.Path)
		case 3:
			return f.str(&r.Query)
		case 4:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			if len(r.Headers) >= MaxListItems {
				return fmt.Errorf("%w: too many headers", ErrMalformed)
			}
			var h Header
			err := walk(f.b, func(f field) error {
				switch f.num {
				case 1:
					return f.str(&h.Name)
				case 2:
					return f.str(&h.Value)
				}
				return nil
			})
			r.Headers = append(r.Headers, h)
			return err
		case 5:
			return f.str(&r.Host)
		}
		return nil
	})
}

// AppendAck appends the encoding of m to b.
func AppendAck(b []byte, m *Ack) []byte {
	b = appendVarint(b, 1, m.Delivery)
	b = appendBool(b, 2, m.Progress)
	for i := range m.Actions {
		a := &m.Actions[i]
		b = appendMessage(b, 3, func(b []byte) []byte {
			b = appendVarint(b, 1, uint64(a.Type))
			b = appendBytes(b, 2, a.Data)
			b = appendString(b, 3, a.Arg)
			b = appendBool(b, 4, a.Flag)
			return appendVarint(b, 5, uint64(a.Code))
		})
	}
	b = appendString(b, 4, m.Worker)
	b = appendBool(b, 5, m.Nack)
	b = appendVarint(b, 6, uint64(m.Attempt))
	b = appendString(b, 7, m.Error)
	b = appendBool(b, 8, m.Busy)
	return b
}

// DecodeAck decodes buf into m, which is reset first. Byte fields alias buf.
func DecodeAck(buf []byte, m *Ack) error {
	*m = Ack{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.u64(&m.Delivery)
		case 2:
			return f.boolean(&m.Progress)
		case 3:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			if len(m.Actions) >= MaxListItems {
				return fmt.Errorf("%w: too many actions", ErrMalformed)
			}
			var a Action
			err := walk(f.b, func(f field) error {
				switch f.num {
				case 1:
					var v int32
					err := f.i32(&v)
					a.Type = ActionType(v)
					return err
				case 2:
					return f.bytes(&a.Data)
				case 3:
					return f.str(&a.Arg)
				case 4:
					return f.boolean(&a.Flag)
				case 5:
					return f.u32(&a.Code)
				}
				return nil
			})
			m.Actions = append(m.Actions, a)
			return err
		case 4:
			return f.str(&m.Worker)
		case 5:
			return f.boolean(&m.Nack)
		case 6:
			return f.u32(&m.Attempt)
		case 7:
			return f.str(&m.Error)
		case 8:
			return f.boolean(&m.Busy)
		}
		return nil
	})
}

// AppendCommand appends the encoding of m to b.
func AppendCommand(b []byte, m *Command) []byte {
	b = appendVarint(b, 1, uint64(m.Version))
	b = appendVarint(b, 2, uint64(m.Op))
	b = appendStrings(b, 3, m.Clients)
	b = appendStrings(b, 4, m.UIDs)
	b = appendStrings(b, 5, m.Groups)
	b = appendBytes(b, 6, m.Data)
	b = appendStrings(b, 7, m.Without)
	b = appendString(b, 8, m.Cursor)
	b = appendVarint(b, 9, uint64(m.Limit))
	b = appendVarint(b, 10, uint64(m.Fields))
	b = appendBool(b, 11, m.Flag)
	b = appendString(b, 12, m.Arg)
	b = appendVarint(b, 13, m.MsgID)
	b = appendStrings(b, 50, m.Listeners)
	b = appendBool(b, 51, m.Structured)
	b = appendString(b, 70, m.GateFrom)
	b = appendVarint(b, 71, m.GateToken)
	b = appendVarint(b, 72, uint64(m.GateLeaseMS))
	return b
}

// DecodeCommand decodes buf into m, which is reset first. Byte fields alias buf.
func DecodeCommand(buf []byte, m *Command) error {
	*m = Command{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.u32(&m.Version)
		case 2:
			var v int32
			err := f.i32(&v)
			m.Op = Op(v)
			return err
		case 3:
			return f.appendStr(&m.Clients)
		case 4:
			return f.appendStr(&m.UIDs)
		case 5:
			return f.appendStr(&m.Groups)
		case 6:
			return f.bytes(&m.Data)
		case 7:
			return f.appendStr(&m.Without)
		case 8:
			return f.str(&m.Cursor)
		case 9:
			return f.u32(&m.Limit)
		case 10:
			return f.u32(&m.Fields)
		case 11:
			return f.boolean(&m.Flag)
		case 12:
			return f.str(&m.Arg)
		case 13:
			return f.u64(&m.MsgID)
		case 50:
			return f.appendStr(&m.Listeners)
		case 51:
			return f.boolean(&m.Structured)
		case 70:
			return f.str(&m.GateFrom)
		case 71:
			return f.u64(&m.GateToken)
		case 72:
			return f.u32(&m.GateLeaseMS)
		}
		return nil
	})
}

// AppendReply appends the encoding of m to b.
func AppendReply(b []byte, m *Reply) []byte {
	b = appendString(b, 1, m.Gateway)
	b = appendString(b, 2, m.ErrorCode)
	b = appendString(b, 3, m.Error)
	b = appendBool(b, 4, m.Found)
	b = appendVarint(b, 5, m.Count)
	b = appendStrings(b, 6, m.Items)
	if m.State != nil {
		b = appendMessage(b, 7, func(b []byte) []byte { return AppendClientState(b, m.State) })
	}
	b = appendBytes(b, 8, m.Session)
	b = appendBool(b, 9, m.More)
	for i := range m.Sessions {
		s := &m.Sessions[i]
		b = appendMessage(b, 10, func(b []byte) []byte {
			b = appendString(b, 1, s.Client)
			return appendBytes(b, 2, s.Session)
		})
	}
	b = appendStrings(b, 11, m.Peers)
	b = appendBytes(b, 12, m.Stats)
	for i := range m.Named {
		n := &m.Named[i]
		b = appendMessage(b, 30, func(b []byte) []byte {
			b = appendString(b, 1, n.Name)
			b = appendVarint(b, 2, n.Count)
			return appendStrings(b, 3, n.Items)
		})
	}
	return b
}

// DecodeReply decodes buf into m, which is reset first. Byte fields alias buf.
func DecodeReply(buf []byte, m *Reply) error {
	*m = Reply{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.str(&m.Gateway)
		case 2:
			return f.str(&m.ErrorCode)
		case 3:
			return f.str(&m.Error)
		case 4:
			return f.boolean(&m.Found)
		case 5:
			return f.u64(&m.Count)
		case 6:
			return f.appendStr(&m.Items)
		case 7:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			if m.State == nil {
				m.State = &ClientState{}
			}
			return mergeClientState(f.b, m.State)
		case 8:
			return f.bytes(&m.Session)
		case 9:
			return f.boolean(&m.More)
		case 10:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			if len(m.Sessions) >= MaxListItems {
				return fmt.Errorf("%w: too many sessions", ErrMalformed)
			}
			var s ClientSession
			err := walk(f.b, func(f field) error {
				switch f.num {
				case 1:
					return f.str(&s.Client)
				case 2:
					return f.bytes(&s.Session)
				}
				return nil
			})
			m.Sessions = append(m.Sessions, s)
			return err
		case 11:
			return f.appendStr(&m.Peers)
		case 12:
			return f.bytes(&m.Stats)
		case 30:
			return decodeNameCount(f, &m.Named)
		}
		return nil
	})
}

// decodeNameCount appends the NameCount in f to dst.
func decodeNameCount(f field, dst *[]NameCount) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	if len(*dst) >= MaxListItems {
		return fmt.Errorf("%w: too many named counts", ErrMalformed)
	}
	var n NameCount
	err := walk(f.b, func(f field) error {
		switch f.num {
		case 1:
			return f.str(&n.Name)
		case 2:
			return f.u64(&n.Count)
		case 3:
			return f.appendStr(&n.Items)
		}
		return nil
	})
	*dst = append(*dst, n)
	return err
}

// AppendHeartbeat appends the encoding of m to b.
func AppendHeartbeat(b []byte, m *Heartbeat) []byte {
	b = appendString(b, 1, m.Gateway)
	b = appendBool(b, 2, m.Leaving)
	b = appendVarint(b, 3, uint64(m.IntervalMs))
	b = appendVarint(b, 4, uint64(m.StartedUnixMs))
	b = appendVarint(b, 5, m.Clients)
	b = appendStrings(b, 50, m.Listeners)
	b = appendBool(b, 80, m.Overloaded)
	return b
}

// DecodeHeartbeat decodes buf into m, which is reset first.
func DecodeHeartbeat(buf []byte, m *Heartbeat) error {
	*m = Heartbeat{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.str(&m.Gateway)
		case 2:
			return f.boolean(&m.Leaving)
		case 3:
			return f.u32(&m.IntervalMs)
		case 4:
			return f.i64(&m.StartedUnixMs)
		case 5:
			return f.u64(&m.Clients)
		case 50:
			return f.appendStr(&m.Listeners)
		case 80:
			return f.boolean(&m.Overloaded)
		}
		return nil
	})
}

// AppendDeadLetter appends the encoding of m to b.
func AppendDeadLetter(b []byte, m *DeadLetter) []byte {
	b = appendVarint(b, 1, uint64(m.Version))
	b = appendMessage(b, 2, func(b []byte) []byte { return AppendEventBatch(b, &m.Batch) })
	b = appendString(b, 3, m.Reason)
	b = appendString(b, 4, m.Error)
	b = appendString(b, 5, m.Worker)
	b = appendVarint(b, 6, uint64(m.TimeUnixMs))
	return b
}

// DecodeDeadLetter decodes buf into m, which is reset first. Byte fields
// alias buf.
func DecodeDeadLetter(buf []byte, m *DeadLetter) error {
	*m = DeadLetter{}
	return walk(buf, func(f field) error {
		switch f.num {
		case 1:
			return f.u32(&m.Version)
		case 2:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			return mergeEventBatch(f.b, &m.Batch)
		case 3:
			return f.str(&m.Reason)
		case 4:
			return f.str(&m.Error)
		case 5:
			return f.str(&m.Worker)
		case 6:
			return f.i64(&m.TimeUnixMs)
		}
		return nil
	})
}

// AppendBatchItem appends batch m as one entry of an EventBatches message:
// EventBatches is the concatenation of such entries.
func AppendBatchItem(b []byte, m *EventBatch) []byte {
	return appendMessage(b, 1, func(b []byte) []byte { return AppendEventBatch(b, m) })
}

// AppendEventBatches appends the encoding of m to b.
func AppendEventBatches(b []byte, m *EventBatches) []byte {
	for i := range m.Batches {
		b = AppendBatchItem(b, &m.Batches[i])
	}
	return b
}

// RangeEventBatches calls fn with the encoding of every EventBatch of the
// EventBatches message buf, in order, until fn returns false. It checks
// the framing only (decode each batch with DecodeEventBatch); the slices
// alias buf.
func RangeEventBatches(buf []byte, fn func(batch []byte) bool) error {
	return rangeItems(buf, "batches", fn)
}

// DecodeEventBatches decodes buf into m, which is reset first. Byte fields
// alias buf.
func DecodeEventBatches(buf []byte, m *EventBatches) error {
	*m = EventBatches{}
	var err error
	rerr := RangeEventBatches(buf, func(b []byte) bool {
		m.Batches = append(m.Batches, EventBatch{})
		err = mergeEventBatch(b, &m.Batches[len(m.Batches)-1])
		return err == nil
	})
	if rerr != nil {
		return rerr
	}
	return err
}

// AppendAckItem appends ack m as one entry of an Acks message: Acks is the
// concatenation of such entries.
func AppendAckItem(b []byte, m *Ack) []byte {
	return appendMessage(b, 1, func(b []byte) []byte { return AppendAck(b, m) })
}

// AppendAcks appends the encoding of m to b.
func AppendAcks(b []byte, m *Acks) []byte {
	for i := range m.Acks {
		b = AppendAckItem(b, &m.Acks[i])
	}
	return b
}

// RangeAcks calls fn with the encoding of every Ack of the Acks message
// buf, in order, until fn returns false. It checks the framing only
// (decode each with DecodeAck); the slices alias buf.
func RangeAcks(buf []byte, fn func(ack []byte) bool) error {
	return rangeItems(buf, "acks", fn)
}

// DecodeAcks decodes buf into m, which is reset first. Byte fields alias
// buf.
func DecodeAcks(buf []byte, m *Acks) error {
	*m = Acks{}
	var err error
	rerr := RangeAcks(buf, func(b []byte) bool {
		m.Acks = append(m.Acks, Ack{})
		err = DecodeAck(b, &m.Acks[len(m.Acks)-1])
		return err == nil
	})
	if rerr != nil {
		return rerr
	}
	return err
}

// errStopRange ends a walk early: fn asked to stop.
var errStopRange = errors.New("bus: range stopped")

// rangeItems calls fn for every field 1 (a nested message) of buf, at
// most MaxListItems of them; other fields are skipped.
func rangeItems(buf []byte, what string, fn func(item []byte) bool) error {
	n := 0
	err := walk(buf, func(f field) error {
		if f.num != 1 {
			return nil
		}
		if err := f.want(protowire.BytesType); err != nil {
			return err
		}
		if n++; n > MaxListItems {
			return fmt.Errorf("%w: too many %s", ErrMalformed, what)
		}
		if !fn(f.b) {
			return errStopRange
		}
		return nil
	})
	if err == errStopRange {
		return nil
	}
	return err
}
