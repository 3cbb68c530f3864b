package node_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
)

// A whole node in the process: embedded NATS, a WebSocket listener on a
// free port and the echo app as its worker.
func ExampleStart() {
	h := echo.Handlers()
	n, err := node.Start(context.Background(), node.Config{
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{
			{Protocol: "ws", Addr: "127.0.0.1:0"},
		}},
		Worker: node.WorkerConfig{Handlers: &h, App: "echo"},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Shutdown(context.Background())

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr("ws").String()+"/", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	_ = ws.WriteMessage(websocket.TextMessage, []byte("hello"))
	_, reply, _ := ws.ReadMessage()
	fmt.Printf("%s\n", reply)
	// Output: hello
}
