package bus

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("bus: malformed message")

// Limits on decoded messages, so that a hostile or broken peer cannot make a
// decoder allocate without bound.
const (
	MaxListItems = 1 << 20 // repeated fields
)

// appendString appends field num as a length-delimited string, skipping empty values.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}

func appendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

// appendMessage appends a nested message produced by enc.
func appendMessage(b []byte, num protowire.Number, enc func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	// Reserve one length byte, then move the body if the length needs more.
	start := len(b)
	b = append(b, 0)
	b = enc(b)
	n := len(b) - start - 1
	size := protowire.SizeVarint(uint64(n))
	if size == 1 {
		b[start] = byte(n)
		return b
	}
	b = append(b, make([]byte, size-1)...)
	copy(b[start+size:], b[start+1:start+1+n])
	protowire.AppendVarint(b[start:start], uint64(n))
	return b
}

// field is one decoded field: its number and type, and its value as a
// varint or as bytes.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// walk calls fn for every field of msg. Unknown fields are passed too; fn
// ignores what it does not know, which keeps the protocol extensible.
func walk(msg []byte, fn func(f field) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return fmt.Errorf("%w: tag: %v", ErrMalformed, protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return fmt.Errorf("%w: field number %d out of range", ErrMalformed, num)
		}
		msg = msg[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(msg)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(msg)
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(n))
		}
		msg = msg[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// typed checks that a known field has the wire type its schema says.
func (f field) want(t protowire.Type) error {
	if f.typ != t {
		return fmt.Errorf("%w: field %d has wire type %d, want %d", ErrMalformed, f.num, f.typ, t)
	}
	return nil
}

func (f field) str(dst *string) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	*dst = intern(f.b)
	return nil
}

func (f field) bytes(dst *[]byte) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	*dst = f.b
	return nil
}

func (f field) appendStr(dst *[]string) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	if len(*dst) >= MaxListItems {
		return fmt.Errorf("%w: field %d has more than %d items", ErrMalformed, f.num, MaxListItems)
	}
	*dst = append(*dst, intern(f.b))
	return nil
}

func (f field) u64(dst *uint64) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = f.v
	return nil
}

func (f field) u32(dst *uint32) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = uint32(f.v)
	return nil
}

func (f field) i64(dst *int64) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = int64(f.v)
	return nil
}

func (f field) i32(dst *int32) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = int32(f.v)
	return nil
}

func (f field) boolean(dst *bool) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = f.v != 0
	return nil
}

// The decoders' string table: string fields repeat from message to
// message (gateway and client ids, listener, protocol, remote address,
// uid, groups), so a decoded string is looked up in a small table of
// strings seen before and shares their memory instead of allocating.
// Strings are immutable, so sharing is safe; the table is bounded
// (internSlots strings of at most internMax bytes) and lock-free. It is
// two-way set-associative: a string may sit in either slot of its set, so
// two hot strings whose hashes meet (the seed is random per process) both
// stay in the table instead of evicting each other on every message.
const (
	internSlots = 4096 // a power of two; sets of two slots
	internMax   = 64
)

var (
	internTab  [internSlots]atomic.Pointer[string]
	internSeed = maphash.MakeSeed()
)

// ForgetStrings empties the decoders' string table. After a burst (a
// wave of connects: a client id, a remote address per batch), the table
// holds up to internSlots strings of past clients, allocated all over the
// burst's heap: each one keeps its 8 KiB span, and with it the span's
// pages, from going back to the system. An idle worker process calls it
// before it returns its free memory (worker.Config.ReleaseMemory).
func ForgetStrings() {
	for i := range internTab {
		internTab[i].Store(nil)
	}
}

// intern returns b as a string, from the table when it holds it. A miss
// puts the new string in the set's first slot and moves the one there to
// the second, so the set keeps the two most recently missed strings.
func intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMax {
		return string(b)
	}
	i := maphash.Bytes(internSeed, b) % internSlots &^ 1
	first, second := &internTab[i], &internTab[i+1]
	p := first.Load()
	if p != nil && *p == string(b) {
		return *p
	}
	if q := second.Load(); q != nil && *q == string(b) {
		return *q
	}
	s := string(b)
	if p != nil {
		second.Store(p)
	}
	first.Store(&s)
	return s
}
