package e2e

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/worker"
)

// TestUDPThroughHTTPAPI: a UDP peer is a client like any other: the
// worker sees it connect and its messages, the node's HTTP API sends to
// it (one datagram per message, up to the largest datagram), and a
// message too large for one datagram is refused with an error
// (400 invalid_request), never truncated.
func TestUDPThroughHTTPAPI(t *testing.T) {
	if api.CheckedSendSize != gateway.MaxDatagram {
		t.Fatalf("api.CheckedSendSize %d != gateway.MaxDatagram %d", api.CheckedSendSize, gateway.MaxDatagram)
	}
	ids := make(chan string, 4)
	h := worker.Handlers{
		OnMessage: func(c *worker.Context, msg []byte) {
			if string(msg) == "hello" {
				ids <- c.ClientID()
			}
			c.Send(append([]byte("echo:"), msg...))
		},
	}
	cl := startCluster(t, clusterConfig{handlers: &h, udp: true, maxMessage: 128 << 10})
	pc, err := net.Dial("udp", cl.n.Addr("udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	read := func(timeout time.Duration) []byte {
		buf := make([]byte, 70000)
		_ = pc.SetReadDeadline(time.Now().Add(timeout))
		n, err := pc.Read(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	if _, err := pc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := read(5 * time.Second); string(got) != "echo:hello" {
		t.Fatalf("echo: %q", got)
	}
	var id string
	select {
	case id = <-ids:
	case <-time.After(5 * time.Second):
		t.Fatal("no client id")
	}
	a := httpAPI{c: cl}
	ctx := ctxFor(t, 10*time.Second)

	must(t, "sendToClient", a.SendToClient(ctx, id, []byte("from the API")))
	if got := read(5 * time.Second); string(got) != "from the API" {
		t.Fatalf("API send: %q", got)
	}
	full := bytes.Repeat([]byte("d"), gateway.MaxDatagram)
	must(t, "sendToClient of a full datagram", a.SendToClient(ctx, id, full))
	if got := read(5 * time.Second); !bytes.Equal(got, full) {
		t.Fatalf("full datagram: got %d bytes, want %d", len(got), len(full))
	}

	err = a.SendToClient(ctx, id, append(full, 'x'))
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "invalid_request" {
		t.Fatalf("over-size send: %v, want 400 invalid_request", err)
	}
	t.Logf("over-size send refused: %v", err)
	if got := read(300 * time.Millisecond); got != nil {
		t.Fatalf("%d bytes arrived for the refused send", len(got))
	}
	info, err := a.GetClientInfo(ctx, id, api.FieldAll)
	must(t, "getClientInfo", err)
	if info.System == nil || info.System.Protocol != "udp" || info.RemoteIP != "127.0.0.1" {
		t.Fatalf("client info: %+v", info)
	}
}
