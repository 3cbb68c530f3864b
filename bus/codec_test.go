package bus

import (
	"fmt"
	"hash/maphash"
	"reflect"
	"testing"
	"unsafe"
)

func sampleBatch() *EventBatch {
	return &EventBatch{
		Version:  Version,
		Gateway:  "0123456789",
		Delivery: 1 << 40,
		Client:   "0123456789000000002a",
		State: ClientState{
			RemoteIP: "::1", RemotePort: 65535, UID: "alice", Groups: []string{"a", "b"},
			Session: []byte(`{"k":1}`), Listener: "ws", Protocol: "ws", ConnectedUnixMs: 1700000000000,
			LastActiveUnixMs: 1700000000001, BytesIn: 1, BytesOut: 2, MessagesIn: 3, MessagesOut: 4, Gateway: "0123456789",
			Protected: true,
		},
		Events: []Event{
			{Type: EventConnect, TimeUnixMs: 5},
			{Type: EventWebSocketConnect, Request: &HTTPRequest{Method: "GET", Path: "/ws", Query: "a=1",
				Headers: []Header{{Name: "Cookie", Value: "x=y"}}, Host: "h"}, BeforeUpgrade: true},
			{Type: EventMessage, Data: []byte("bin\x00 \r\n "), Binary: true},
			{Type: EventClose, CloseReason: "client_closed"},
		},
		Attempt: 2,
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		in     any
		encode func(any) []byte
		decode func([]byte) (any, error)
	}{
		{"batch", sampleBatch(),
			func(v any) []byte { return AppendEventBatch(nil, v.(*EventBatch)) },
			func(b []byte) (any, error) { var m EventBatch; err := DecodeEventBatch(b, &m); return &m, err }},
		{"ack", &Ack{Delivery: 9, Progress: true, Worker: "w1", Actions: []Action{
			{Type: ActionSend, Data: []byte{0, 1, 2}, Flag: true},
			{Type: ActionBindUID, Arg: "u"},
			{Type: ActionReject, Code: 403, Arg: "no"},
			{Type: ActionProtect, Flag: true},
		}},
			func(v any) []byte { return AppendAck(nil, v.(*Ack)) },
			func(b []byte) (any, error) { var m Ack; err := DecodeAck(b, &m); return &m, err }},
		{"command", &Command{Version: 1, Op: OpSendToGroup, Clients: []string{"c"}, UIDs: []string{"u1", "u2"},
			Groups: []string{"g"}, Data: []byte("hi"), Without: []string{"x"}, Cursor: "cur", Limit: 10,
			Fields: 255, Flag: true, Arg: "arg", MsgID: 1<<63 + 5},
			func(v any) []byte { return AppendCommand(nil, v.(*Command)) },
			func(b []byte) (any, error) { var m Command; err := DecodeCommand(b, &m); return &m, err }},
		{"reply", &Reply{Gateway: "g", ErrorCode: "not_found", Error: "e", Found: true, Count: 7,
			Items: []string{"a", "b"}, State: &ClientState{UID: "u"}, Session: []byte("{}"), More: true,
			Sessions: []ClientSession{{Client: "c", Session: []byte(`{"a":1}`)}}, Peers: []string{"g", "h"},
			Stats: []byte(`{"gateway":"g","pid":1}`)},
			func(v any) []byte { return AppendReply(nil, v.(*Reply)) },
			func(b []byte) (any, error) { var m Reply; err := DecodeReply(b, &m); return &m, err }},
		{"heartbeat", &Heartbeat{Gateway: "g", Leaving: true, IntervalMs: 1000, StartedUnixMs: 42, Clients: 3},
			func(v any) []byte { return AppendHeartbeat(nil, v.(*Heartbeat)) },
			func(b []byte) (any, error) { var m Heartbeat; err := DecodeHeartbeat(b, &m); return &m, err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.encode(tt.in)
			got, err := tt.decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.in) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.in)
			}
		})
	}
}

// TestLargeNested checks nested messages whose length needs a multi-byte varint.
func TestLargeNested(t *testing.T) {
	for _, n := range []int{0, 1, 126, 127, 128, 300, 16383, 16384, 1 << 20} {
		b := &EventBatch{Events: []Event{{Type: EventMessage, Data: make([]byte, n)}}}
		for i := range b.Events[0].Data {
			b.Events[0].Data[i] = byte(i)
		}
		var got EventBatch
		if err := DecodeEventBatch(AppendEventBatch(nil, b), &got); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(got.Events) != 1 || len(got.Events[0].Data) != n {
			t.Fatalf("n=%d: got %d events", n, len(got.Events))
		}
		for i, c := range got.Events[0].Data {
			if c != byte(i) {
				t.Fatalf("n=%d: byte %d differs", n, i)
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"truncated tag", []byte{0x80}},
		{"truncated length", []byte{0x12, 0x05, 'a'}},
		{"wrong wire type", []byte{0x08 | 0x02, 0x00}}, // field 1 as bytes
		{"bad group", []byte{0x0b}},
	}
	for _, tt := range tests {
		var c Command
		if err := DecodeCommand(tt.in, &c); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	// Unknown fields are skipped.
	var c Command
	if err := DecodeCommand([]byte{0xf8, 0x01, 0x05}, &c); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
}

// TestDecodeEventBatchHeader: the header reads what the whole batch
// decodes to; a batch whose framing is broken fails there already, one
// whose events are bad inside a sound frame only when decoded whole.
func TestDecodeEventBatchHeader(t *testing.T) {
	b := sampleBatch()
	b.Attempt = 3
	good := AppendEventBatch(nil, b)
	badEvent := appendMessage(AppendEventBatch(nil, &EventBatch{Version: Version, Delivery: 9, Attempt: 2}), 6,
		func(b []byte) []byte { return append(b, 0xff, 0xff, 0xff) })
	tests := []struct {
		name                       string
		in                         []byte
		version, delivery, attempt uint64
		headerErr, batchErr        bool
	}{
		{"whole", good, Version, 1 << 40, 3, false, false},
		{"empty", nil, 0, 0, 0, false, false},
		{"truncated", good[:len(good)-3], 0, 0, 0, true, true},
		{"delivery as bytes", []byte{0x1a, 0x00}, 0, 0, 0, true, true},
		{"bad event in a sound frame", badEvent, Version, 9, 2, false, true},
	}
	for _, tt := range tests {
		version, delivery, attempt, err := DecodeEventBatchHeader(tt.in)
		if (err != nil) != tt.headerErr {
			t.Errorf("%s: header error %v, want error %v", tt.name, err, tt.headerErr)
		}
		if !tt.headerErr && (uint64(version) != tt.version || delivery != tt.delivery || uint64(attempt) != tt.attempt) {
			t.Errorf("%s: header %d %d %d, want %d %d %d", tt.name, version, delivery, attempt, tt.version, tt.delivery, tt.attempt)
		}
		var m EventBatch
		if err := DecodeEventBatch(tt.in, &m); (err != nil) != tt.batchErr {
			t.Errorf("%s: batch error %v, want error %v", tt.name, err, tt.batchErr)
		}
	}
}

func FuzzDecodeEventBatch(f *testing.F) {
	f.Add(AppendEventBatch(nil, sampleBatch()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m EventBatch
		version, delivery, attempt, herr := DecodeEventBatchHeader(data)
		if DecodeEventBatch(data, &m) != nil {
			return
		}
		// The header of a batch that decodes reads the same.
		if herr != nil || version != m.Version || delivery != m.Delivery || attempt != m.Attempt {
			t.Fatalf("header %d %d %d (%v), batch %d %d %d", version, delivery, attempt, herr, m.Version, m.Delivery, m.Attempt)
		}
		// What decodes must encode and decode to the same thing.
		var again EventBatch
		if err := DecodeEventBatch(AppendEventBatch(nil, &m), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again.Events) != len(m.Events) || again.Client != m.Client || again.Delivery != m.Delivery {
			t.Fatalf("re-decode differs")
		}
	})
}

// FuzzDecodeMulti feeds the decoders of EventBatches and Acks: what
// decodes must encode and decode to the same thing, and the ranging
// decoders must see the same items.
func FuzzDecodeMulti(f *testing.F) {
	f.Add(AppendEventBatches(nil, &EventBatches{Batches: []EventBatch{*sampleBatch(), *sampleBatch()}}))
	f.Add(AppendAcks(nil, &Acks{Acks: []Ack{{Delivery: 1, Actions: []Action{{Type: ActionSend, Data: []byte("x")}}}, {Delivery: 2, Nack: true}}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m EventBatches
		if DecodeEventBatches(data, &m) == nil {
			var again EventBatches
			if err := DecodeEventBatches(AppendEventBatches(nil, &m), &again); err != nil {
				t.Fatalf("re-decode batches: %v", err)
			}
			if len(again.Batches) != len(m.Batches) {
				t.Fatalf("re-decode: %d batches, want %d", len(again.Batches), len(m.Batches))
			}
			for i := range m.Batches {
				if again.Batches[i].Delivery != m.Batches[i].Delivery || len(again.Batches[i].Events) != len(m.Batches[i].Events) {
					t.Fatalf("re-decode: batch %d differs", i)
				}
			}
		}
		var a Acks
		if DecodeAcks(data, &a) == nil {
			n := 0
			if err := RangeAcks(data, func([]byte) bool { n++; return true }); err != nil || n != len(a.Acks) {
				t.Fatalf("RangeAcks: %d items, err %v; DecodeAcks: %d", n, err, len(a.Acks))
			}
			var again Acks
			if err := DecodeAcks(AppendAcks(nil, &a), &again); err != nil || len(again.Acks) != len(a.Acks) {
				t.Fatalf("re-decode acks: %v", err)
			}
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(AppendCommand(nil, &Command{Op: OpSendToUID, UIDs: []string{"a"}, Data: []byte("x")}))
	f.Add(AppendCommand(nil, &Command{Op: OpProtect, Clients: []string{"0123456789000000002a"}, Flag: true}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Command
		if DecodeCommand(data, &m) != nil {
			return
		}
		var again Command
		if err := DecodeCommand(AppendCommand(nil, &m), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(m), normalize(again)) {
			t.Fatalf("re-decode differs: %+v vs %+v", m, again)
		}
	})
}

func normalize(c Command) Command {
	if len(c.Data) == 0 {
		c.Data = nil
	}
	return c
}

func FuzzDecodeAckReply(f *testing.F) {
	f.Add(AppendAck(nil, &Ack{Delivery: 1, Actions: []Action{{Type: ActionSend, Data: []byte("x")}}}))
	f.Add(AppendAck(nil, &Ack{Delivery: 2, Actions: []Action{{Type: ActionProtect, Flag: true}}}))
	f.Add(AppendReply(nil, &Reply{Found: true, State: &ClientState{Protected: true, Gateway: "g"}}))
	f.Add(AppendReply(nil, &Reply{Items: []string{"a"}, State: &ClientState{UID: "u"}}))
	f.Add(AppendReply(nil, &Reply{Gateway: "g", Stats: []byte(`{"gateway":"g"}`)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Ack
		_ = DecodeAck(data, &a)
		var r Reply
		_ = DecodeReply(data, &r)
		var h Heartbeat
		_ = DecodeHeartbeat(data, &h)
	})
}

func BenchmarkEncodeEventBatch(b *testing.B) {
	m := &EventBatch{Version: 1, Gateway: "0123456789", Delivery: 12345, Client: "0123456789000000002a",
		State:  ClientState{RemoteIP: "127.0.0.1", RemotePort: 50000, UID: "user-1", Groups: []string{"room"}, Listener: "ws", Protocol: "ws"},
		Events: []Event{{Type: EventMessage, Data: make([]byte, 100)}}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEventBatch(buf[:0], m)
	}
}

func BenchmarkDecodeEventBatch(b *testing.B) {
	m := &EventBatch{Version: 1, Gateway: "0123456789", Delivery: 12345, Client: "0123456789000000002a",
		State:  ClientState{RemoteIP: "127.0.0.1", RemotePort: 50000, UID: "user-1", Groups: []string{"room"}, Listener: "ws", Protocol: "ws"},
		Events: []Event{{Type: EventMessage, Data: make([]byte, 100)}}}
	buf := AppendEventBatch(nil, m)
	var out EventBatch
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeEventBatch(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeCommandSendToGroup(b *testing.B) {
	m := &Command{Version: 1, Op: OpSendToGroup, Groups: []string{"room"}, Data: make([]byte, 100)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendCommand(buf[:0], m)
	}
}

func BenchmarkDecodeCommandSendToGroup(b *testing.B) {
	buf := AppendCommand(nil, &Command{Version: 1, Op: OpSendToGroup, Groups: []string{"room"}, Data: make([]byte, 100)})
	var out Command
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeCommand(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// TestForgetStrings: decoded strings share the table's memory until
// ForgetStrings, after which the table holds none of them (their
// allocations can be freed) and decoding fills it again.
func TestForgetStrings(t *testing.T) {
	enc := AppendEventBatch(nil, &EventBatch{Version: Version, Gateway: "gw1", Delivery: 1, Client: "client-forget-1"})
	decode := func() string {
		var b EventBatch
		if err := DecodeEventBatchInto(enc, &b); err != nil {
			t.Fatal(err)
		}
		return b.Client
	}
	first, second := decode(), decode()
	if unsafe.StringData(first) != unsafe.StringData(second) {
		t.Fatal("the second decode did not share the first one's string")
	}
	ForgetStrings()
	for i := range internTab {
		if p := internTab[i].Load(); p != nil {
			t.Fatalf("slot %d still holds %q", i, *p)
		}
	}
	third := decode()
	if unsafe.StringData(third) == unsafe.StringData(first) || third != first {
		t.Fatalf("after ForgetStrings: %q shares the forgotten string", third)
	}
	if fourth := decode(); unsafe.StringData(fourth) != unsafe.StringData(third) {
		t.Fatal("the table was not filled again")
	}
}

// TestInternSetKeepsTwo: two strings whose hashes fall in the same set
// both stay in the table, so decoding them in turn allocates nothing. With
// a direct-mapped table they evicted each other on every message, which
// made the worker's allocation ceilings fail now and then (the seed is
// random per process, so which strings meet changes from run to run).
func TestInternSetKeepsTwo(t *testing.T) {
	set := func(s string) uint64 { return maphash.String(internSeed, s) % internSlots &^ 1 }
	a := "set-0"
	b := ""
	for i := 1; i < 100_000 && b == ""; i++ {
		if s := fmt.Sprintf("set-%d", i); set(s) == set(a) {
			b = s
		}
	}
	if b == "" {
		t.Fatal("no second string in the first one's set")
	}
	ab, bb := []byte(a), []byte(b)
	first, second := intern(ab), intern(bb)
	if got := intern(ab); unsafe.StringData(got) != unsafe.StringData(first) {
		t.Fatalf("%q was evicted by %q", a, b)
	}
	if got := intern(bb); unsafe.StringData(got) != unsafe.StringData(second) {
		t.Fatalf("%q was evicted by %q", b, a)
	}
	if n := testing.AllocsPerRun(100, func() { intern(ab); intern(bb) }); n != 0 {
		t.Fatalf("interning two strings of one set in turn: %.1f allocations, want 0", n)
	}
}
