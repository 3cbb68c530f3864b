package gateway_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/gateway"
)

// startEcho starts an embedded NATS, a gateway with a ws and a tcp
// listener, and a bare-NATS echo worker.
func startEcho(t *testing.T) *gateway.Server {
	t.Helper()
	return startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0"},
		{Protocol: "tcp", Addr: "127.0.0.1:0"},
	}})
}

// startEchoOn is startEcho with the gateway configuration cfg (a nil
// Logger discards the logs).
func startEchoOn(t testing.TB, cfg gateway.Config) *gateway.Server {
	t.Helper()
	nc := gateway.StartTestBus(t)
	gateway.EchoWorker(t, nc)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	gw, err := gateway.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(t.Context()) })
	return gw
}

func TestSmokeEcho(t *testing.T) {
	gw := startEcho(t)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr("ws").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, msg := range []string{"hello", "two\r\n ", "x\x00 "} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != msg {
			t.Fatalf("got %q want %q", got, msg)
		}
	}
	tc, err := net.Dial("tcp", gw.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_, _ = tc.Write([]byte("line one\nline two\n"))
	r := bufio.NewReader(tc)
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"line one\n", "line two\n"} {
		got, err := r.ReadString('\n')
		if err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
}

// TestRefusedHandshakeAnswersOnce: a refused upgrade gets one HTTP error
// answer and the connection closes; bytes that follow are not parsed as
// another request.
func TestRefusedHandshakeAnswersOnce(t *testing.T) {
	gw := startEcho(t)
	c, err := net.Dial("tcp", gw.Addr("ws").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bad := "GET / HTTP/1.1\r\nHost: x\r\n\r\n" // no Upgrade headers
	if _, err := c.Write([]byte(bad + bad + bad)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (want the answer, then EOF)", err)
	}
	if n := strings.Count(string(all), "HTTP/1.1 "); n != 1 || !strings.HasPrefix(string(all), "HTTP/1.1 400") {
		t.Fatalf("got %d answers: %q", n, all)
	}
}
