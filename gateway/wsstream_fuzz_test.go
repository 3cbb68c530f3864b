package gateway_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
)

// fuzzGateway starts an embedded NATS and a gateway with one ws and one tcp
// listener and no worker (events are parked, which is fine here).
func fuzzGateway(f *testing.F) *gateway.Server {
	f.Helper()
	nc := gateway.StartTestBus(f)
	gw, err := gateway.New(nc, gateway.Config{
		Logger: slog.New(slog.DiscardHandler),
		Listeners: []gateway.ListenerConfig{
			{Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: 4096},
			{Protocol: "tcp", Addr: "127.0.0.1:0", MaxMessage: 4096},
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = gw.Shutdown(f.Context()) })
	return gw
}

const fuzzUpgrade = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// FuzzClientStream sends arbitrary bytes to a running gateway over real
// sockets: after a valid WebSocket upgrade (mode 0), as the upgrade
// request itself (mode 1), or to the line-framed TCP listener (mode 2).
// The gateway runs its parsers on its event loop, where a panic ends the
// process, so surviving is the first check; the second is that the
// gateway still serves a well-behaved client afterwards.
func FuzzClientStream(f *testing.F) {
	gw := fuzzGateway(f)
	wsAddr, tcpAddr := gw.Addr("ws").String(), gw.Addr("tcp").String()
	f.Add(uint8(0), []byte{0x81, 0x85, 1, 2, 3, 4, 'i', 'g', 'o', 'm', 'n'})
	f.Add(uint8(0), []byte{0x01, 0x81, 0, 0, 0, 0, 'a', 0x89, 0x80, 0, 0, 0, 0, 0x80, 0x81, 0, 0, 0, 0, 'b'})
	f.Add(uint8(0), []byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8})
	f.Add(uint8(0), []byte{0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4})
	f.Add(uint8(1), []byte("GET /?a=b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"))
	f.Add(uint8(2), []byte("hello\nworld\n\xff\xfe\n"))
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		addr, prefix := wsAddr, fuzzUpgrade
		switch mode % 3 {
		case 1:
			prefix = ""
		case 2:
			addr, prefix = tcpAddr, ""
		}
		exchange(t, addr, prefix, data)
		checkServing(t, wsAddr)
	})
}

// exchange connects to addr, writes prefix (reading the upgrade answer when
// there is one), then data, then closes, reading whatever the server says
// for a short while.
func exchange(t *testing.T, addr, prefix string, data []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	if prefix != "" {
		if _, err := io.WriteString(c, prefix); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: status %d", resp.StatusCode)
		}
	}
	_, _ = c.Write(data)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _ = io.Copy(io.Discard, br)
}

// checkServing completes a WebSocket echo-less round: upgrade, ping, pong.
func checkServing(t *testing.T, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("gateway stopped serving: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, fuzzUpgrade); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("gateway stopped upgrading: %v %v", resp, err)
	}
	// A masked ping with payload "ok" must come back as an unmasked pong.
	if _, err := c.Write([]byte{0x89, 0x82, 0, 0, 0, 0, 'o', 'k'}); err != nil {
		t.Fatal(err)
	}
	pong := make([]byte, 4)
	if _, err := io.ReadFull(br, pong); err != nil {
		t.Fatalf("no pong: %v", err)
	}
	if string(pong) != "\x8a\x02ok" {
		t.Fatalf("pong %q", pong)
	}
}
