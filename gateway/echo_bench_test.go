package gateway_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/gateway"
)

// BenchmarkEchoRoundTrip measures the event path of one WebSocket client:
// message in, event batch published over the embedded NATS, the worker's
// ack with a send action, the echo written back. allocs/op counts the
// whole process (gateway, NATS, the test worker and client).
func BenchmarkEchoRoundTrip(b *testing.B) {
	gw := startEchoOn(b, gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr("ws").String()+"/", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	msg := bytes.Repeat([]byte("x"), 64)
	_ = ws.SetReadDeadline(time.Now().Add(time.Minute))
	b.ReportAllocs()
	for b.Loop() {
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			b.Fatal(err)
		}
		_, got, err := ws.ReadMessage()
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			b.Fatalf("echo %q, want %q", got, msg)
		}
	}
}
