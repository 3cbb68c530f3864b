package worker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gatework/gatework/bus"
)

// TestDecodeAndSendValue: Context.Decode reads the message of a json
// listener, the decoded value of another codec, refuses a raw listener
// (ErrNoCodec) and a non-message event; SendValue queues an
// ActionSendValue with the value as JSON; a decode_error event reaches
// OnDecodeError, not OnMessage.
func TestDecodeAndSendValue(t *testing.T) {
	type got struct {
		decoded string
		err     error
	}
	var g got
	var decodeErr *DecodeError
	w := quietWorker(t, Handlers{
		OnMessage: func(c *Context, m []byte) {
			var v any
			g.err = c.Decode(&v)
			g.decoded = fmt.Sprint(v)
			if err := c.SendValue(map[string]int{"n": 1}); err != nil {
				t.Error(err)
			}
			if err := c.SendValue(make(chan int)); err == nil {
				t.Error("SendValue of a channel: no error")
			}
		},
		OnConnect: func(c *Context) {
			g.err = c.Decode(new(any))
		},
		OnDecodeError: func(c *Context, m []byte, err *DecodeError) {
			decodeErr = err
			g.decoded = string(m)
		},
	})
	for _, tc := range []struct {
		name    string
		codec   string
		ev      bus.Event
		decoded string
		err     error // errors.Is; nil: none
		anyErr  bool  // some error that is not a sentinel
	}{
		{"json", "json", bus.Event{Type: bus.EventMessage, Data: []byte(`{"a":[1,2]}`)}, "map[a:[1 2]]", nil, false},
		{"custom codec", "kv", bus.Event{Type: bus.EventMessage, Data: []byte(`a=1`), Value: []byte(`{"a":"1"}`)}, "map[a:1]", nil, false},
		{"raw", "", bus.Event{Type: bus.EventMessage, Data: []byte(`{"a":1}`)}, "<nil>", ErrNoCodec, false},
		{"not a message", "json", bus.Event{Type: bus.EventConnect}, "", nil, true},
	} {
		g = got{}
		data := bus.AppendEventBatch(nil, &bus.EventBatch{Version: bus.Version, Gateway: "0a1b2c3d4e", Delivery: 1,
			Client: "0a1b2c3d4e0000000001", State: bus.ClientState{Codec: tc.codec, Listener: "l"}, Events: []bus.Event{tc.ev}, Attempt: 1})
		ackBytes, err := runBatch(w, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.err != nil && !errors.Is(g.err, tc.err), tc.err == nil && !tc.anyErr && g.err != nil, tc.anyErr && g.err == nil:
			t.Errorf("%s: Decode error %v, want %v (any: %v)", tc.name, g.err, tc.err, tc.anyErr)
		}
		if tc.ev.Type == bus.EventMessage && g.decoded != tc.decoded && tc.err == nil {
			t.Errorf("%s: decoded %s, want %s", tc.name, g.decoded, tc.decoded)
		}
		var ack bus.Ack
		if err := bus.DecodeAck(ackBytes, &ack); err != nil {
			t.Fatal(err)
		}
		if tc.ev.Type == bus.EventMessage {
			if len(ack.Actions) != 1 || ack.Actions[0].Type != bus.ActionSendValue || string(ack.Actions[0].Data) != `{"n":1}` {
				t.Errorf("%s: actions %+v, want one ActionSendValue {\"n\":1}", tc.name, ack.Actions)
			}
		}
	}

	g = got{}
	data := bus.AppendEventBatch(nil, &bus.EventBatch{Version: bus.Version, Gateway: "0a1b2c3d4e", Delivery: 2,
		Client: "0a1b2c3d4e0000000001", State: bus.ClientState{Codec: "json", Listener: "dev"},
		Events: []bus.Event{{Type: bus.EventDecodeError, Data: []byte("nope"), Error: "invalid character 'o'"}}, Attempt: 1})
	if _, err := runBatch(w, data, nil); err != nil {
		t.Fatal(err)
	}
	if decodeErr == nil || g.decoded != "nope" || decodeErr.Listener != "dev" || decodeErr.Codec != "json" || decodeErr.Reason != "invalid character 'o'" {
		t.Errorf("OnDecodeError got %q, %+v", g.decoded, decodeErr)
	}
}
