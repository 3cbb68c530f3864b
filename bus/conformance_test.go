package bus_test

// The hand-written codec against protobuf-go: every message type that has
// a codec is encoded by hand and decoded by protobuf-go types built from
// gatework.proto at test time (protocompile + dynamicpb), and the other
// way round. The Go structs and the .proto are matched field by field by
// name, so a field added to one without the other, or to both without the
// codec, fails here.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/gatework/gatework/bus"
)

// codec is the hand codec of one top-level message.
type codec struct {
	goType reflect.Type
	encode func(v any) []byte
	decode func(b []byte) (any, error)
}

// codecs are the messages with a hand codec, by their .proto name.
var codecs = map[protoreflect.Name]codec{
	"EventBatch": {reflect.TypeFor[bus.EventBatch](),
		func(v any) []byte { return bus.AppendEventBatch(nil, v.(*bus.EventBatch)) },
		func(b []byte) (any, error) { m := new(bus.EventBatch); return m, bus.DecodeEventBatch(b, m) }},
	"EventBatches": {reflect.TypeFor[bus.EventBatches](),
		func(v any) []byte { return bus.AppendEventBatches(nil, v.(*bus.EventBatches)) },
		func(b []byte) (any, error) { m := new(bus.EventBatches); return m, bus.DecodeEventBatches(b, m) }},
	"Acks": {reflect.TypeFor[bus.Acks](),
		func(v any) []byte { return bus.AppendAcks(nil, v.(*bus.Acks)) },
		func(b []byte) (any, error) { m := new(bus.Acks); return m, bus.DecodeAcks(b, m) }},
	"ClientState": {reflect.TypeFor[bus.ClientState](),
		func(v any) []byte { return bus.AppendClientState(nil, v.(*bus.ClientState)) },
		func(b []byte) (any, error) { m := new(bus.ClientState); return m, bus.DecodeClientState(b, m) }},
	"Ack": {reflect.TypeFor[bus.Ack](),
		func(v any) []byte { return bus.AppendAck(nil, v.(*bus.Ack)) },
		func(b []byte) (any, error) { m := new(bus.Ack); return m, bus.DecodeAck(b, m) }},
	"Command": {reflect.TypeFor[bus.Command](),
		func(v any) []byte { return bus.AppendCommand(nil, v.(*bus.Command)) },
		func(b []byte) (any, error) { m := new(bus.Command); return m, bus.DecodeCommand(b, m) }},
	"Reply": {reflect.TypeFor[bus.Reply](),
		func(v any) []byte { return bus.AppendReply(nil, v.(*bus.Reply)) },
		func(b []byte) (any, error) { m := new(bus.Reply); return m, bus.DecodeReply(b, m) }},
	"Heartbeat": {reflect.TypeFor[bus.Heartbeat](),
		func(v any) []byte { return bus.AppendHeartbeat(nil, v.(*bus.Heartbeat)) },
		func(b []byte) (any, error) { m := new(bus.Heartbeat); return m, bus.DecodeHeartbeat(b, m) }},
	"DeadLetter": {reflect.TypeFor[bus.DeadLetter](),
		func(v any) []byte { return bus.AppendDeadLetter(nil, v.(*bus.DeadLetter)) },
		func(b []byte) (any, error) { m := new(bus.DeadLetter); return m, bus.DecodeDeadLetter(b, m) }},
	"Task": {reflect.TypeFor[bus.Task](),
		func(v any) []byte { return bus.AppendTask(nil, v.(*bus.Task)) },
		func(b []byte) (any, error) { m := new(bus.Task); return m, bus.DecodeTask(b, m) }},
	"TaskReply": {reflect.TypeFor[bus.TaskReply](),
		func(v any) []byte { return bus.AppendTaskReply(nil, v.(*bus.TaskReply)) },
		func(b []byte) (any, error) { m := new(bus.TaskReply); return m, bus.DecodeTaskReply(b, m) }},
	"WorkerInfo": {reflect.TypeFor[bus.WorkerInfo](),
		func(v any) []byte { return bus.AppendWorkerInfo(nil, v.(*bus.WorkerInfo)) },
		func(b []byte) (any, error) { m := new(bus.WorkerInfo); return m, bus.DecodeWorkerInfo(b, m) }},
	"WorkerMessage": {reflect.TypeFor[bus.WorkerMessage](),
		func(v any) []byte { return bus.AppendWorkerMessage(nil, v.(*bus.WorkerMessage)) },
		func(b []byte) (any, error) { m := new(bus.WorkerMessage); return m, bus.DecodeWorkerMessage(b, m) }},
}

// codecNames is codecs' keys in a fixed order (fuzz inputs pick by index).
var codecNames = []protoreflect.Name{"EventBatch", "ClientState", "Ack", "Command", "Reply", "Heartbeat", "DeadLetter",
	"Task", "TaskReply", "WorkerInfo", "WorkerMessage", "EventBatches", "Acks"}

// fieldMap pairs a .proto field with the index of its Go struct field.
type fieldMap struct {
	fd      protoreflect.FieldDescriptor
	goIndex int
}

// schemaT is gatework.proto compiled, with the field maps of every message
// reachable from a codec.
type schemaT struct {
	file   protoreflect.FileDescriptor
	fields map[protoreflect.FullName][]fieldMap
	types  map[protoreflect.FullName]reflect.Type
}

var (
	schemaOnce sync.Once
	schemaVal  *schemaT
	schemaErr  error
)

// schema compiles gatework.proto (once per process) and matches it with
// the Go types.
func schema(t testing.TB) *schemaT {
	t.Helper()
	schemaOnce.Do(func() { schemaVal, schemaErr = loadSchema() })
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return schemaVal
}

func loadSchema() (*schemaT, error) {
	c := protocompile.Compiler{Resolver: &protocompile.SourceResolver{}}
	files, err := c.Compile(context.Background(), "gatework.proto")
	if err != nil {
		return nil, fmt.Errorf("compile gatework.proto: %w", err)
	}
	s := &schemaT{
		file:   files[0],
		fields: map[protoreflect.FullName][]fieldMap{},
		types:  map[protoreflect.FullName]reflect.Type{},
	}
	msgs := s.file.Messages()
	for _, name := range codecNames {
		md := msgs.ByName(name)
		if md == nil {
			return nil, fmt.Errorf("gatework.proto has no message %s", name)
		}
		if err := s.match(md, codecs[name].goType); err != nil {
			return nil, err
		}
	}
	if len(codecNames) != len(codecs) {
		return nil, errors.New("codecNames and codecs disagree")
	}
	for i := range msgs.Len() {
		if md := msgs.Get(i); s.types[md.FullName()] == nil {
			return nil, fmt.Errorf("message %s has no hand codec and is in no message that has one", md.Name())
		}
	}
	return s, nil
}

// norm maps "remote_ip" and "RemoteIP" to the same key.
func norm(name string) string { return strings.ToLower(strings.ReplaceAll(name, "_", "")) }

// goKinds are the Go kinds that can hold each .proto kind.
var goKinds = map[protoreflect.Kind][]reflect.Kind{
	protoreflect.BoolKind:   {reflect.Bool},
	protoreflect.Int32Kind:  {reflect.Int32},
	protoreflect.EnumKind:   {reflect.Int32},
	protoreflect.Int64Kind:  {reflect.Int64},
	protoreflect.Uint32Kind: {reflect.Uint32},
	protoreflect.Uint64Kind: {reflect.Uint64},
	protoreflect.StringKind: {reflect.String},
	// A bytes field may be held in a Go string (raw request data).
	protoreflect.BytesKind:   {reflect.Slice, reflect.String},
	protoreflect.MessageKind: {reflect.Struct},
}

// match records the field map of md ↔ rt and recurses into nested
// messages. Every field on either side must have its counterpart.
func (s *schemaT) match(md protoreflect.MessageDescriptor, rt reflect.Type) error {
	if prev, ok := s.types[md.FullName()]; ok {
		if prev != rt {
			return fmt.Errorf("message %s matches both %v and %v", md.Name(), prev, rt)
		}
		return nil
	}
	s.types[md.FullName()] = rt
	byName := map[string]int{}
	for i := range rt.NumField() {
		if !rt.Field(i).IsExported() {
			return fmt.Errorf("%v.%s: unexported field", rt, rt.Field(i).Name)
		}
		byName[norm(rt.Field(i).Name)] = i
	}
	var maps []fieldMap
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		idx, ok := byName[norm(string(fd.Name()))]
		if !ok {
			return fmt.Errorf("%s.%s has no field in Go type %v", md.Name(), fd.Name(), rt)
		}
		delete(byName, norm(string(fd.Name())))
		ft := rt.Field(idx).Type
		if fd.IsList() {
			if ft.Kind() != reflect.Slice {
				return fmt.Errorf("%s.%s is repeated but %v.%s is %v", md.Name(), fd.Name(), rt, rt.Field(idx).Name, ft)
			}
			ft = ft.Elem()
		} else if fd.Message() != nil && ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if fd.IsMap() || fd.Cardinality() == protoreflect.Required {
			return fmt.Errorf("%s.%s: maps and required fields are not supported", md.Name(), fd.Name())
		}
		want, known := goKinds[fd.Kind()]
		if !known {
			return fmt.Errorf("%s.%s: kind %v has no Go mapping here", md.Name(), fd.Name(), fd.Kind())
		}
		if !containsKind(want, ft.Kind()) || (fd.Kind() == protoreflect.BytesKind && ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.Uint8) {
			return fmt.Errorf("%s.%s is %v but %v.%s is %v", md.Name(), fd.Name(), fd.Kind(), rt, rt.Field(idx).Name, rt.Field(idx).Type)
		}
		if fd.Message() != nil {
			if err := s.match(fd.Message(), ft); err != nil {
				return err
			}
		}
		maps = append(maps, fieldMap{fd: fd, goIndex: idx})
	}
	for name := range byName {
		return fmt.Errorf("Go type %v has a field %q that %s does not have", rt, name, md.Name())
	}
	s.fields[md.FullName()] = maps
	return nil
}

func containsKind(ks []reflect.Kind, k reflect.Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// toDynamic converts the Go struct v to a message of md. Zero values are
// left unset (proto3 has no presence for them); so is a non-pointer nested
// struct that is all zero.
func (s *schemaT) toDynamic(v reflect.Value, md protoreflect.MessageDescriptor) *dynamicpb.Message {
	m := dynamicpb.NewMessage(md)
	for _, f := range s.fields[md.FullName()] {
		gv := v.Field(f.goIndex)
		switch {
		case f.fd.IsList():
			if gv.Len() == 0 {
				continue
			}
			l := m.Mutable(f.fd).List()
			for i := range gv.Len() {
				if f.fd.Message() != nil {
					l.Append(protoreflect.ValueOfMessage(s.toDynamic(gv.Index(i), f.fd.Message())))
				} else {
					l.Append(toScalar(gv.Index(i), f.fd))
				}
			}
		case f.fd.Message() != nil:
			if gv.Kind() == reflect.Pointer {
				if gv.IsNil() {
					continue
				}
				gv = gv.Elem()
			} else if gv.IsZero() {
				continue
			}
			m.Set(f.fd, protoreflect.ValueOfMessage(s.toDynamic(gv, f.fd.Message())))
		default:
			if gv.IsZero() || (gv.Kind() == reflect.Slice && gv.Len() == 0) {
				continue
			}
			m.Set(f.fd, toScalar(gv, f.fd))
		}
	}
	return m
}

func toScalar(gv reflect.Value, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(gv.Bool())
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(gv.Int()))
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(gv.Int()))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(gv.Int())
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(uint32(gv.Uint()))
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(gv.Uint())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(gv.String())
	case protoreflect.BytesKind:
		if gv.Kind() == reflect.String {
			return protoreflect.ValueOfBytes([]byte(gv.String()))
		}
		return protoreflect.ValueOfBytes(gv.Bytes())
	}
	panic(fmt.Sprintf("kind %v", fd.Kind())) // match refused it already
}

// toGo converts m to a new value of Go type rt.
func (s *schemaT) toGo(m protoreflect.Message, rt reflect.Type) reflect.Value {
	v := reflect.New(rt).Elem()
	for _, f := range s.fields[m.Descriptor().FullName()] {
		if !m.Has(f.fd) {
			continue
		}
		gv := v.Field(f.goIndex)
		val := m.Get(f.fd)
		switch {
		case f.fd.IsList():
			l := val.List()
			sl := reflect.MakeSlice(gv.Type(), l.Len(), l.Len())
			for i := range l.Len() {
				if f.fd.Message() != nil {
					sl.Index(i).Set(s.toGo(l.Get(i).Message(), gv.Type().Elem()))
				} else {
					setScalar(sl.Index(i), l.Get(i), f.fd)
				}
			}
			gv.Set(sl)
		case f.fd.Message() != nil:
			if gv.Kind() == reflect.Pointer {
				p := reflect.New(gv.Type().Elem())
				p.Elem().Set(s.toGo(val.Message(), gv.Type().Elem()))
				gv.Set(p)
			} else {
				gv.Set(s.toGo(val.Message(), gv.Type()))
			}
		default:
			setScalar(gv, val, f.fd)
		}
	}
	return v
}

func setScalar(gv reflect.Value, val protoreflect.Value, fd protoreflect.FieldDescriptor) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		gv.SetBool(val.Bool())
	case protoreflect.Int32Kind, protoreflect.Int64Kind:
		gv.SetInt(val.Int())
	case protoreflect.EnumKind:
		gv.SetInt(int64(val.Enum()))
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		gv.SetUint(val.Uint())
	case protoreflect.StringKind:
		gv.SetString(val.String())
	case protoreflect.BytesKind:
		if gv.Kind() == reflect.String {
			gv.SetString(string(val.Bytes()))
		} else {
			gv.SetBytes(append([]byte(nil), val.Bytes()...))
		}
	}
}

// fill sets every field of m to a random non-zero value: a field the hand
// codec forgot cannot go unnoticed. Strings are valid UTF-8 (proto3 wants
// it); bytes are any bytes.
func fill(m protoreflect.Message, r *rand.Rand, depth int) {
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if fd.Message() != nil && depth > 4 {
			continue
		}
		if fd.IsList() {
			l := m.Mutable(fd).List()
			for range 1 + r.IntN(3) {
				if fd.Message() != nil {
					e := l.NewElement()
					fill(e.Message(), r, depth+1)
					l.Append(e)
				} else {
					l.Append(randScalar(fd, r))
				}
			}
			continue
		}
		if fd.Message() != nil {
			fill(m.Mutable(fd).Message(), r, depth+1)
			continue
		}
		m.Set(fd, randScalar(fd, r))
	}
}

// randScalar returns a random non-zero value for fd, of varied size.
func randScalar(fd protoreflect.FieldDescriptor, r *rand.Rand) protoreflect.Value {
	u := 1 + r.Uint64()>>r.IntN(64) // 1 … 2^64-1, small ones as likely as big ones
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(u) | 1)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if r.IntN(4) == 0 { // an open enum carries unknown numbers too
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(int32(u) | 1))
		}
		return protoreflect.ValueOfEnum(vals.Get(1 + r.IntN(vals.Len()-1)).Number())
	case protoreflect.Int64Kind:
		if r.IntN(2) == 0 {
			return protoreflect.ValueOfInt64(-int64(u>>1) - 1)
		}
		return protoreflect.ValueOfInt64(int64(u>>1) + 1)
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(uint32(u) | 1)
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(u)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(randString(r))
	case protoreflect.BytesKind:
		b := make([]byte, 1+r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if r.IntN(2) == 0 {
			b = append(b, 0xff, 0xc3, 0x28) // never UTF-8
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic(fmt.Sprintf("kind %v", fd.Kind()))
}

func randString(r *rand.Rand) string {
	var sb strings.Builder
	for range 1 + r.IntN(20) {
		switch r.IntN(4) {
		case 0:
			sb.WriteRune(rune(r.IntN(0x80)))
		case 1:
			sb.WriteRune(rune(0x80 + r.IntN(0x780)))
		case 2:
			sb.WriteRune(rune(0xe000 + r.IntN(0x1000)))
		default:
			sb.WriteRune(rune(0x10000 + r.IntN(0x10000)))
		}
	}
	return sb.String()
}

// roundTrip checks one random message of md both ways: hand-encoded and
// decoded by protobuf-go, protobuf-go-encoded and decoded by hand.
func roundTrip(t *testing.T, s *schemaT, name protoreflect.Name, r *rand.Rand) {
	t.Helper()
	md := s.file.Messages().ByName(name)
	c := codecs[name]
	want := dynamicpb.NewMessage(md)
	fill(want, r, 0)
	g := s.toGo(want, c.goType)
	if back := s.toDynamic(g, md); !proto.Equal(back, want) {
		t.Fatalf("%s: the test's own Go conversion loses data:\n%v\nvs\n%v", name, prototext.Format(back), prototext.Format(want))
	}

	got := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(c.encode(g.Addr().Interface()), got); err != nil {
		t.Fatalf("%s: protobuf-go cannot decode the hand encoding: %v\n%v", name, err, prototext.Format(want))
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%s: hand-encoded, protobuf-go-decoded:\n%v\nwant\n%v", name, prototext.Format(got), prototext.Format(want))
	}

	b, err := proto.MarshalOptions{Deterministic: r.IntN(2) == 0}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := c.decode(b)
	if err != nil {
		t.Fatalf("%s: the hand decoder refuses protobuf-go's encoding: %v\n%v", name, err, prototext.Format(want))
	}
	if back := s.toDynamic(reflect.ValueOf(dec).Elem(), md); !proto.Equal(back, want) {
		t.Fatalf("%s: protobuf-go-encoded, hand-decoded:\n%v\nwant\n%v", name, prototext.Format(back), prototext.Format(want))
	}
}

// TestCodecMatchesProtobuf: random messages of every type, every field
// set, go through the hand codec and protobuf-go in both directions.
func TestCodecMatchesProtobuf(t *testing.T) {
	s := schema(t)
	for _, name := range codecNames {
		t.Run(string(name), func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(len(name))))
			for range 300 {
				roundTrip(t, s, name, r)
			}
		})
	}
}

// TestProtobufDecodesRawRequest: a WebSocket upgrade whose path, query,
// host and headers are not UTF-8 (any client can send that) still makes a
// batch that protobuf-go, and so any proto3 decoder, accepts.
func TestProtobufDecodesRawRequest(t *testing.T) {
	s := schema(t)
	req := &bus.HTTPRequest{
		Method: "G\xffT", Path: "/caf\xe9", Query: "q=\xc3\x28&x=\x80", Host: "h\xfe",
		Headers: []bus.Header{{Name: "X-\xff", Value: "v\xc0\xafw"}, {Name: "Cookie", Value: "a=\xed\xa0\x80"}},
	}
	batch := &bus.EventBatch{Version: bus.Version, Gateway: "0123456789", Delivery: 7, Client: "0123456789000000002a",
		Events: []bus.Event{{Type: bus.EventWebSocketConnect, Request: req}}, Attempt: 1}
	md := s.file.Messages().ByName("EventBatch")
	m := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(bus.AppendEventBatch(nil, batch), m); err != nil {
		t.Fatalf("protobuf-go refuses a batch with raw request bytes: %v", err)
	}
	got := s.toGo(m, reflect.TypeFor[bus.EventBatch]()).Interface().(bus.EventBatch)
	if len(got.Events) != 1 || !reflect.DeepEqual(got.Events[0].Request, req) {
		t.Fatalf("decoded request %+v, want %+v", got.Events[0].Request, req)
	}
}

// TestEnumsMatchProto: the Go enum constants are the .proto's.
func TestEnumsMatchProto(t *testing.T) {
	s := schema(t)
	events := s.file.Enums().ByName("EventType").Values()
	for i := range events.Len() {
		v := events.Get(i)
		if want := strings.ToLower(strings.TrimPrefix(string(v.Name()), "EVENT_")); bus.EventType(v.Number()).String() != want {
			t.Errorf("EventType %d is %q in Go, %s in the .proto", v.Number(), bus.EventType(v.Number()), v.Name())
		}
	}
	ops := s.file.Enums().ByName("Op").Values()
	// Op numbers have gaps (ranges are reserved per feature): every number
	// up to well past the largest is valid in Go exactly when the .proto
	// names it.
	for n := range int32(256) {
		v := ops.ByNumber(protoreflect.EnumNumber(n))
		if want := v != nil && n != 0; bus.Op(n).Valid() != want {
			t.Errorf("Op %d: Valid() = %v, in the .proto: %v", n, bus.Op(n).Valid(), v != nil)
		}
		if v != nil && n != 0 && bus.Op(n).String() == "unknown" {
			t.Errorf("Op %d (%s) has no name in Go", n, v.Name())
		}
	}
	actions := s.file.Enums().ByName("ActionType").Values()
	goActions := []bus.ActionType{bus.ActionUnknown, bus.ActionSend, bus.ActionClose, bus.ActionBindUID,
		bus.ActionUnbindUID, bus.ActionJoinGroup, bus.ActionLeaveGroup, bus.ActionSetSession,
		bus.ActionUpdateSession, bus.ActionDeleteSession, bus.ActionReject, bus.ActionProtect,
		bus.ActionPauseRecv, bus.ActionResumeRecv, bus.ActionConfirm, bus.ActionSetBinary,
		bus.ActionSendValue}
	if actions.Len() != len(goActions) {
		t.Fatalf("%d action types in the .proto, %d in Go", actions.Len(), len(goActions))
	}
	for i, a := range goActions {
		if actions.Get(i).Number() != protoreflect.EnumNumber(a) {
			t.Errorf("action %s is %d in the .proto, %d in Go", actions.Get(i).Name(), actions.Get(i).Number(), a)
		}
	}
}

// FuzzProtobufRoundTrip round-trips random messages (from a fuzzed seed)
// through the hand codec and protobuf-go, both ways.
func FuzzProtobufRoundTrip(f *testing.F) {
	s := schema(f)
	for i := range codecNames {
		f.Add(uint8(i), uint64(i))
	}
	f.Fuzz(func(t *testing.T, which uint8, seed uint64) {
		name := codecNames[int(which)%len(codecNames)]
		roundTrip(t, s, name, rand.New(rand.NewPCG(seed, seed>>32^0x9e3779b97f4a7c15)))
	})
}

// FuzzProtobufDecode feeds the same bytes to the hand decoder and to
// protobuf-go. Where both accept them they must agree; where protobuf-go
// accepts and the hand decoder does not, the only excuse is a known field
// with the wrong wire type (protobuf-go keeps it as an unknown field) or a
// list over bus.MaxListItems, and the canonical re-encoding must then
// decode by hand; where the hand decoder accepts and protobuf-go does not,
// the only excuse is a string field that is not UTF-8.
func FuzzProtobufDecode(f *testing.F) {
	s := schema(f)
	r := rand.New(rand.NewPCG(3, 4))
	for i, name := range codecNames {
		m := dynamicpb.NewMessage(s.file.Messages().ByName(name))
		fill(m, r, 0)
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	f.Add(uint8(0), []byte{0x2a, 0x03, 0x0a, 0x01, 'a', 0x2a, 0x02, 0x10, 0x01}) // state twice: merged
	f.Add(uint8(0), []byte{0x2a, 0x02, 0x18, 0x01})                              // uid as a varint: unknown to protobuf-go
	f.Add(uint8(0), []byte{0x08, 0x01, 0x08, 0x02})                              // version twice: last wins
	f.Add(uint8(3), []byte{0x62, 0x01, 0xff})                                    // arg not UTF-8
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		name := codecNames[int(which)%len(codecNames)]
		md := s.file.Messages().ByName(name)
		c := codecs[name]
		pm := dynamicpb.NewMessage(md)
		pbErr := proto.Unmarshal(data, pm)
		g, handErr := c.decode(data)
		switch {
		case pbErr == nil && handErr == nil:
			if a, b := s.toDynamic(reflect.ValueOf(g).Elem(), md), s.toDynamic(s.toGo(pm, c.goType), md); !proto.Equal(a, b) {
				t.Fatalf("%s: hand decoder\n%v\nprotobuf-go\n%v", name, prototext.Format(a), prototext.Format(b))
			}
		case pbErr == nil:
			if !errors.Is(handErr, bus.ErrMalformed) ||
				!(strings.Contains(handErr.Error(), "wire type") || strings.Contains(handErr.Error(), "too many") || strings.Contains(handErr.Error(), "more than")) {
				t.Fatalf("%s: protobuf-go accepts what the hand decoder refuses: %v", name, handErr)
			}
			dropUnknown(pm)
			canon, err := proto.Marshal(pm)
			if err != nil {
				t.Fatal(err)
			}
			if len(canon) > 1<<16 {
				return // a list over the hand decoder's bound, re-encoded
			}
			g2, err := c.decode(canon)
			if err != nil {
				t.Fatalf("%s: the hand decoder refuses protobuf-go's encoding: %v", name, err)
			}
			if a, b := s.toDynamic(reflect.ValueOf(g2).Elem(), md), s.toDynamic(s.toGo(pm, c.goType), md); !proto.Equal(a, b) {
				t.Fatalf("%s: hand decoder\n%v\nprotobuf-go\n%v", name, prototext.Format(a), prototext.Format(b))
			}
		case handErr == nil:
			// The one leniency: the hand decoder does not check that
			// string fields are UTF-8 (the gateway passes names through as
			// bytes; docs/bus-protocol.md asks senders for UTF-8). The
			// string may even be gone from the result: a scalar field seen
			// twice keeps the last value, while protobuf-go refuses the
			// first.
			if !strings.Contains(pbErr.Error(), "UTF-8") {
				t.Fatalf("%s: the hand decoder accepts what protobuf-go refuses: %v", name, pbErr)
			}
		}
	})
}

// dropUnknown clears the unknown fields of m and of its nested messages.
func dropUnknown(m protoreflect.Message) {
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				dropUnknown(v.List().Get(i).Message())
			}
		case fd.Message() != nil:
			dropUnknown(v.Message())
		}
		return true
	})
}
