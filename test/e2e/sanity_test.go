package e2e

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

func TestSanity(t *testing.T) {
	h := worker.Handlers{
		OnConnect: func(c *worker.Context) {
			c.BindUID("u-" + c.ClientID()[16:])
			c.JoinGroup("room")
			_ = c.SetSession(api.Session{"n": 1})
		},
		OnMessage: func(c *worker.Context, msg []byte) {
			if string(msg) == "who" {
				c.Send([]byte(c.UID()))
				return
			}
			c.Send(msg)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, node.Config{
		Logger:  slog.New(slog.DiscardHandler),
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}},
		HTTP:    node.HTTPConfig{Addr: "127.0.0.1:0"},
		Worker:  node.WorkerConfig{Handlers: &h},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	var conns []*websocket.Conn
	for range 3 {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr("ws").String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		conns = append(conns, ws)
		_ = ws.WriteMessage(websocket.TextMessage, []byte("who"))
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("uid %s", m)
	}
	a := n.API()
	cnt, err := a.GetClientCount(ctx)
	t.Logf("count %+v %v", cnt, err)
	if cnt.Value != 3 {
		t.Fatalf("count = %+v", cnt)
	}
	pg, err := a.GetClientListByGroup(ctx, "room", api.PageRequest{Limit: 2})
	t.Logf("page %+v %v", pg, err)
	pg2, err := a.GetClientListByGroup(ctx, "room", api.PageRequest{Cursor: pg.NextCursor, Limit: 2})
	t.Logf("page2 %+v %v", pg2, err)
	if len(pg.Items)+len(pg2.Items) != 3 || pg2.NextCursor != "" {
		t.Fatal("pagination")
	}
	info, err := a.GetClientInfo(ctx, pg.Items[0], api.FieldAll)
	t.Logf("info %+v %v sys=%+v", info, err, info.System)
	if err := a.SendToGroup(ctx, []string{"room"}, []byte("hello all"), pg.Items[0]); err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, ws := range conns {
		_ = ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, m, err := ws.ReadMessage(); err == nil && string(m) == "hello all" {
			got++
		}
	}
	if got != 2 {
		t.Fatalf("group send reached %d", got)
	}
	uc, err := a.GetUIDCount(ctx, 0)
	t.Logf("uids %+v %v", uc, err)
	s, err := a.GetSession(ctx, pg.Items[0])
	t.Logf("session %+v %v", s, err)
	st := n.Gateway().Stats()
	t.Logf("stats %+v", st)
}
