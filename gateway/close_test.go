package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// closingWorker answers a message "close <final>" with the actions send
// "before", then close with the final message (force when final starts
// with "force"); other messages are echoed.
func closingWorker(t *testing.T, nc *nats.Conn) {
	t.Helper()
	subj, _ := bus.NewSubjects("")
	sub, err := nc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var b bus.EventBatch
		if err := bus.DecodeEventBatch(m.Data, &b); err != nil {
			t.Error(err)
			return
		}
		ack := bus.Ack{Delivery: b.Delivery}
		for _, ev := range b.Events {
			if ev.Type != bus.EventMessage {
				continue
			}
			final, ok := strings.CutPrefix(string(ev.Data), "close ")
			if !ok {
				ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: ev.Data})
				continue
			}
			ack.Actions = append(ack.Actions,
				bus.Action{Type: bus.ActionSend, Data: []byte("before")},
				bus.Action{Type: bus.ActionClose, Data: []byte(final), Flag: strings.HasPrefix(final, "force")},
				bus.Action{Type: bus.ActionSend, Data: []byte("after the close")})
		}
		_ = m.Respond(bus.AppendAck(nil, &ack))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// TestCloseWithFinalMessage: ACTION_CLOSE with data sends the data as the
// client's last message, then closes (WebSocket: with a close frame), also
// when forced; nothing sent after the close reaches the client.
func TestCloseWithFinalMessage(t *testing.T) {
	nc := testBus(t)
	closingWorker(t, nc)
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0"}, {Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	for _, final := range []string{"bye", "force bye"} {
		t.Run("tcp "+final, func(t *testing.T) {
			c, err := net.Dial("tcp", s.Addr("tcp").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "close "+final+"\n"); err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(bufio.NewReader(c))
			if err != nil {
				t.Fatalf("read: %v (%q)", err, all)
			}
			// A forced close may drop "before"; never the final message.
			want := "before\n" + final + "\n"
			if string(all) != want && !(strings.HasPrefix(final, "force") && string(all) == final+"\n") {
				t.Errorf("got %q, want %q then EOF", all, want)
			}
		})
		t.Run("ws "+final, func(t *testing.T) {
			ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr("ws").String()+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := ws.WriteMessage(websocket.TextMessage, []byte("close "+final)); err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != ReasonCloseRequested.wsCode() {
						t.Errorf("end: %v, want a close frame with code %d", err, ReasonCloseRequested.wsCode())
					}
					break
				}
				got = append(got, string(msg))
			}
			if len(got) == 0 || got[len(got)-1] != final || (!strings.HasPrefix(final, "force") && len(got) != 2) {
				t.Errorf("got %q, want [before %s]", got, final)
			}
		})
	}
}
