package gateway_test

import (
	"bufio"
	"crypto/tls"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
)

// TestTLSDelayReceiveAndPause: on wss:// and TCP+TLS listeners with
// delay_receive, what a client sends before Confirm is not echoed, and
// after Confirm it is, in order; a pause then holds the next message
// until ResumeRecv. The receive holds sit below the TLS record layer (the
// socket is not read), so records are decrypted only once reading
// resumes.
func TestTLSDelayReceiveAndPause(t *testing.T) {
	ca := newTestCA(t)
	tc := tlsFiles(t, t.TempDir(), ca, "gw")
	nc := gateway.StartTestBus(t)
	gateway.EchoWorker(t, nc)
	gw, err := gateway.New(nc, gateway.Config{Logger: slog.New(slog.DiscardHandler), Listeners: []gateway.ListenerConfig{
		{Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", TLS: tc, DelayReceive: true},
		{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc, DelayReceive: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(t.Context()) })
	subj, _ := bus.NewSubjects("")
	cmd := func(op bus.Op, client string) {
		t.Helper()
		c := bus.Command{Version: bus.Version, Op: op, Clients: []string{client}}
		m, err := nc.Request(subj.Cmd(gw.ID()), bus.AppendCommand(nil, &c), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep bus.Reply
		if err := bus.DecodeReply(m.Data, &rep); err != nil || rep.ErrorCode != "" {
			t.Fatalf("%s: %v %s", op, err, rep.Error)
		}
	}
	// lastClient returns the id of the newest client of the gateway.
	lastClient := func() string {
		t.Helper()
		c := bus.Command{Version: bus.Version, Op: bus.OpClientList, Limit: 1000}
		m, err := nc.Request(subj.Query(), bus.AppendCommand(nil, &c), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep bus.Reply
		if err := bus.DecodeReply(m.Data, &rep); err != nil || len(rep.Items) == 0 {
			t.Fatalf("client list: %v, %d items", err, len(rep.Items))
		}
		return rep.Items[len(rep.Items)-1]
	}
	cc := &tls.Config{RootCAs: ca.pool}

	ws, err := dialWSS(t, gw.Addr("wss"), cc)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, m, err := ws.ReadMessage(); err == nil {
		t.Fatalf("echo %q before Confirm", m)
	}
	// A read that timed out leaves gorilla's connection unusable: check
	// the echoes on a fresh client.
	ws, err = dialWSS(t, gw.Addr("wss"), cc)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	id := lastClient()
	time.Sleep(100 * time.Millisecond)
	cmd(bus.OpConfirm, id)
	for _, want := range []string{"one", "two"} {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != want {
			t.Fatalf("after Confirm: %q, %v; want %q", m, err, want)
		}
	}

	c, err := tls.Dial("tcp", gw.Addr("tls").String(), cc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("a\nb\n")); err != nil {
		t.Fatal(err)
	}
	// The server registers the client once its side of the handshake
	// is done, which may be after the client's.
	wsID := id
	tlsWait(t, 5*time.Second, "the tcp+tls client", func() bool { id = lastClient(); return id != wsID })
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("echo %q before Confirm", line)
	}
	cmd(bus.OpConfirm, id)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"a\n", "b\n"} {
		if line, err := r.ReadString('\n'); err != nil || line != want {
			t.Fatalf("after Confirm: %q, %v; want %q", line, err, want)
		}
	}
	cmd(bus.OpPauseRecv, id)
	if _, err := c.Write([]byte("c\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("echo %q while paused", line)
	}
	cmd(bus.OpResumeRecv, id)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "c\n" {
		t.Fatalf("after ResumeRecv: %q, %v", line, err)
	}
}
