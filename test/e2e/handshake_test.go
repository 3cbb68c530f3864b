package e2e

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestCloseHandshakeServerClosesFirst: once the gateway has sent and
// received a close frame, it ends its side of the TCP connection at once
// (FIN; RFC 6455 §7.1.1: the server closes first), whoever started the
// handshake. A client that follows the RFC answers the close frame and
// waits for the server's FIN, as gorilla/websocket and browsers do; the
// gateway must not make it wait for a linger timeout.
func TestCloseHandshakeServerClosesFirst(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	ctx := ctxFor(t, 30*time.Second)
	for _, who := range []string{"server", "client"} {
		t.Run(who+" starts", func(t *testing.T) {
			known := []string{}
			if pg, err := cl.n.API().GetClientList(ctx, api.PageRequest{}); err == nil {
				known = pg.Items
			}
			s := dialStalled(t, cl, "ws")
			ws := s.ws
			id := onlyClient(t, cl, known...)
			if who == "server" {
				must(t, "CloseClient", cl.n.API().CloseClient(ctx, id, false))
			} else {
				if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(writeTimeout)); err != nil {
					t.Fatal(err)
				}
			}
			// gorilla answers the server's close frame itself (default
			// close handler) and returns the close error.
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _, err := ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 1000 {
				t.Fatalf("want the server's close frame 1000, got %v", err)
			}
			// Both close frames are exchanged: the server's FIN is due.
			got := time.Now()
			nc := ws.UnderlyingConn()
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := nc.Read(make([]byte, 64))
			waited := time.Since(got)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("after the close handshake: read %d bytes, %v; want EOF", n, err)
			}
			t.Logf("the server's FIN came %v after the close handshake", waited)
			if waited > 600*time.Millisecond {
				t.Fatalf("the server's FIN came only %v after both close frames were exchanged (RFC 6455 §7.1.1)", waited)
			}
		})
	}
}
